"""What the weight-file readers share: random access to a file's bytes, and tensors read by rows.

A model file may sit on local disk, in the blob store as one object, or as Xet chunks spread over
many xorbs; the readers only ever ask for byte ranges, so one reader serves all three and a
fingerprint never copies a model file before reading it. Tensors are read by rows so that no
reader has to hold a whole large tensor (a 128k-token embedding is 2 GB in float32): the caller
asks for the rows it needs, in blocks.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from kaiyuan.core.errors import InvalidInputError

Floats = npt.NDArray[np.float32]
Buffer = bytes | memoryview  # what a stream yields: read bytes, or a view of a mapped file
P = ParamSpec("P")
R = TypeVar("R")


def one_blas_thread(function: Callable[P, R]) -> Callable[P, R]:
    """Run `function` with the BLAS library on one thread.

    The products here are many and small (hundreds of rows by a few thousand); multithreaded
    OpenBLAS spins its threads on every one and, on a two-core machine with anything else
    running, turns milliseconds into seconds. One thread is both faster and predictable.
    """

    @functools.wraps(function)
    def limited(*args: P.args, **kwargs: P.kwargs) -> R:
        with threadpool_limits(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return limited


def as_floats(values: object) -> Floats:
    """`values` as a float32 array (a no-op for one already)."""
    return np.asarray(values, dtype=np.float32)


# The window of a mapped file for one sequential pass (hashing). From disk, 64 MB windows (the
# next one asked for while this one is hashed) read as fast as a plain sequential read; 16 MB
# windows were half as fast. Two windows mapped at a time bound the memory.
READ_BLOCK = 64 * 1024 * 1024


class WeightFile(Protocol):
    """Random access to the bytes of one model file."""

    @property
    def name(self) -> str:
        """The file's path in its repository (or on disk): what findings name."""
        ...

    @property
    def size(self) -> int: ...

    def read_at(self, offset: int, length: int) -> bytes:
        """Exactly `length` bytes from `offset`; InvalidInput if the file is shorter."""
        ...

    def stream(self, start: int, end: int) -> Iterator[Buffer]:
        """Bytes [start, end) in large pieces, for one sequential pass (hashing)."""
        ...


class StoredTensor(Protocol):
    """One tensor of a parsed weight file, read on demand."""

    @property
    def name(self) -> str: ...

    @property
    def shape(self) -> tuple[int, ...]:
        """Row-major (numpy) order: for GGUF, ggml's dimensions reversed."""
        ...

    @property
    def dtype(self) -> str:
        """The stored type as the format names it (`BF16`, `Q4_K`, `FLOAT16`, …)."""
        ...

    @property
    def byte_range(self) -> tuple[int, int]:
        """Absolute [begin, end) of the stored bytes in the file: what tensor hashes cover."""
        ...

    def read_rows(self, start: int, stop: int) -> Floats:
        """Rows [start, stop) along the first axis, dequantized to float32.

        The result has shape (stop - start, *shape[1:]); a 1-D tensor's rows are its elements.
        """
        ...


@dataclass(frozen=True, slots=True)
class ParsedWeights:
    """A weight file's tensors and what its header says about the model."""

    format: str  # "safetensors" | "gguf" | "onnx"
    file: WeightFile
    tensors: tuple[StoredTensor, ...]
    metadata: dict[str, object] = field(default_factory=dict)
    # Vocabulary carried inside the file (GGUF `tokenizer.ggml.tokens`), by token id.
    tokens: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class LocalWeightFile:
    """A model file on local disk, read with positioned reads (no shared file offset)."""

    path: Path
    name: str = ""

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise InvalidInputError(f"{self.label}: negative range {offset}+{length}")
        fd = os.open(self.path, os.O_RDONLY)
        try:
            data = _pread_all(fd, offset, length)
        finally:
            os.close(fd)
        if len(data) != length:
            raise InvalidInputError(f"{self.label}: {length} bytes at {offset} run past its end")
        return data

    def stream(self, start: int, end: int) -> Iterator[Buffer]:
        """Views of the file mapped into memory, a window at a time.

        Nothing is copied out of the page cache, and no more than two windows are mapped. The
        kernel is asked to read each window ahead while the one before it is consumed. As
        with any mapped file (safetensors maps every file it loads), the file must not be
        truncated while it is read; blobs in the hub's store never change once written.
        """
        if start < 0 or start > end:
            raise InvalidInputError(f"{self.label}: range {start}:{end} is not a range")
        with self.path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size < end:
                raise InvalidInputError(f"{self.label}: ends before byte {end}")
            fd = handle.fileno()
            ahead = _Window.open(fd, start, end)
            while ahead is not None:
                current, ahead = ahead, _Window.open(fd, ahead.end, end)  # read ahead
                try:
                    yield current.view()
                finally:
                    current.close()

    @property
    def label(self) -> str:
        return self.name or self.path.name


@dataclass(slots=True)
class _Window:
    """File bytes [start, end) mapped read-only (the mapping starts on a granule boundary)."""

    mapped: mmap.mmap
    skip: int  # bytes of the mapping before `start`
    end: int

    @classmethod
    def open(cls, fd: int, start: int, end: int) -> _Window | None:
        if start >= end:
            return None
        stop = min(end, start + READ_BLOCK)
        base = start - start % mmap.ALLOCATIONGRANULARITY
        mapped = mmap.mmap(fd, stop - base, access=mmap.ACCESS_READ, offset=base)
        if hasattr(mapped, "madvise"):  # start reading it in now, in the background
            mapped.madvise(mmap.MADV_WILLNEED)
        return cls(mapped, start - base, stop)

    def view(self) -> memoryview:
        return memoryview(self.mapped)[self.skip :]

    def close(self) -> None:
        """Unmap now, or when the last view goes if the caller still holds one."""
        with contextlib.suppress(BufferError):
            self.mapped.close()


def _pread_all(fd: int, offset: int, length: int) -> bytes:
    pieces: list[bytes] = []
    while length > 0:
        piece = os.pread(fd, min(length, 1 << 30), offset)
        if not piece:
            break
        pieces.append(piece)
        offset += len(piece)
        length -= len(piece)
    return b"".join(pieces)


@dataclass(frozen=True, slots=True)
class RangedWeightFile:
    """A file read through a function that streams any byte range (the hub's content store)."""

    name: str
    size: int
    open_range: Callable[[int, int], Iterator[bytes]]  # (start, end) -> chunks

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise InvalidInputError(f"{self.name}: {length} bytes at {offset} run past its end")
        if length == 0:
            return b""
        data = b"".join(self.open_range(offset, offset + length))
        if len(data) != length:
            raise InvalidInputError(f"{self.name}: read {len(data)} of {length} bytes at {offset}")
        return data

    def stream(self, start: int, end: int) -> Iterator[bytes]:
        if start < 0 or end > self.size or start > end:
            raise InvalidInputError(f"{self.name}: range {start}:{end} outside the file")
        return self.open_range(start, end)
