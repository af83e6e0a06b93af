"""One sealed safetensors file, decrypted only in memory: whole, tensor by tensor, or in place.

Each chunk is authenticated (AES-256-GCM) as it is decrypted, straight into the memory its bytes
belong in: a buffer the tensors are views of (`load`), a tensor's own memory (`get_tensor`), or
tensors that already exist (`load_into`, a model's parameters). Nothing in the clear is written
to a file. On a torch accelerator, tensors are filled a slice at a time through one small pinned
staging buffer that is wiped after each tensor (see docs/distribution.md for the design of
decryption on the device itself).
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kaiyuan.core.errors import InvalidInputError, UnsupportedError
from kaiyuan.services.distribution.sealing import SealedReader
from kaiyuan.services.provenance.safetensors import (
    LENGTH_BYTES,
    MAX_HEADER_BYTES,
    TensorInfo,
    parse_header,
)

STAGE_BYTES = 64 * 1024 * 1024
_THREADS = min(4, os.cpu_count() or 1)
_NUMPY = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U64": np.uint64,
    "U32": np.uint32,
    "U16": np.uint16,
    "U8": np.uint8,
    "BOOL": np.bool_,
    "C64": np.complex64,
}
_TORCH = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "C64": "complex64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}


class SealedCheckpoint:
    """One sealed safetensors file, its tensors decrypted when asked for."""

    def __init__(
        self,
        path: Path,
        data_key: bytes,
        repo_path: str,
        *,
        framework: str = "np",
        device: str = "cpu",
        stage_bytes: int = STAGE_BYTES,
    ) -> None:
        if framework not in {"np", "pt"}:
            raise InvalidInputError("framework must be 'np' (numpy) or 'pt' (torch)")
        if device != "cpu" and framework != "pt":
            raise InvalidInputError(f"device {device!r} needs framework='pt'")
        self.path = repo_path
        self._framework = framework
        self._device = device
        self._stage_bytes = max(1, stage_bytes)
        self._file = path.open("rb")
        try:
            size = os.fstat(self._file.fileno()).st_size
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else None
            view = memoryview(self._map) if self._map is not None else memoryview(b"")
            self._view = view
            self._reader = SealedReader(lambda o, n: view[o : o + n], size, data_key, repo_path)
            self._tensors, self.metadata, self._data_start = self._header()
        except BaseException:
            self.close()
            raise

    @property
    def file_id(self) -> str:
        return self._reader.header.file_id

    def keys(self) -> list[str]:
        return list(self._tensors)

    def __contains__(self, name: object) -> bool:
        return name in self._tensors

    def info(self, name: str) -> TensorInfo:
        found = self._tensors.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def get_tensor(self, name: str) -> Any:
        """One tensor, decrypted now (only the chunks it spans)."""
        tensor = self.info(name)
        if self._device != "cpu":
            return self._staged(tensor)
        out = self._empty(tensor)
        self._reader.read_into(self._data_start + tensor.begin, _bytes_of(out), _THREADS)
        return out

    def load(self) -> dict[str, Any]:
        """Every tensor.

        On the CPU the data is decrypted in one pass (all threads) into one buffer the tensors
        are views of; on a device, tensor by tensor through staging.
        """
        if self._device != "cpu":
            return {name: self._staged(t) for name, t in self._tensors.items()}
        data_size = self._reader.size - self._data_start
        buffer = np.empty(data_size, dtype=np.uint8)
        self._reader.read_into(self._data_start, _memory(buffer), _THREADS)
        return {name: self._view_of(buffer, t) for name, t in self._tensors.items()}

    def load_into(self, targets: Mapping[str, Any]) -> None:
        """Decrypt tensors straight into existing arrays or tensors (a model's parameters).

        Each target must have its tensor's shape and byte size and be contiguous; names not in
        `targets` are skipped. Every chunk is decrypted once, into the memory it belongs in.
        """
        pieces: list[tuple[int, memoryview]] = []
        for name, target in targets.items():
            tensor = self.info(name)
            if tuple(target.shape) != tensor.shape or _nbytes(target) != tensor.end - tensor.begin:
                raise InvalidInputError(
                    f"{name}: the target is {tuple(target.shape)} of {_nbytes(target)} bytes; "
                    f"the sealed tensor is {tensor.shape} of {tensor.end - tensor.begin}"
                )
            if not _is_host(target):
                self._staged(tensor, into=target)
                continue
            pieces.append((self._data_start + tensor.begin, _bytes_of(target)))
        self._reader.scatter(pieces, _THREADS)

    def close(self) -> None:
        self._reader = None  # type: ignore[assignment]
        view, self._view = getattr(self, "_view", None), None  # type: ignore[assignment]
        mapped, self._map = getattr(self, "_map", None), None
        if view is not None:
            view.release()
        if mapped is not None:
            # A slice may still be referenced (by a traceback): then unmapped when it goes.
            with contextlib.suppress(BufferError):
                mapped.close()
        self._file.close()

    # --- pieces -------------------------------------------------------------------------------
    def _header(self) -> tuple[dict[str, TensorInfo], dict[str, str], int]:
        size = self._reader.size
        if size < LENGTH_BYTES:
            raise InvalidInputError(f"{self.path}: the sealed plaintext is not a safetensors file")
        length = int.from_bytes(self._reader.read(0, LENGTH_BYTES), "little")
        if length > MAX_HEADER_BYTES or LENGTH_BYTES + length > size:
            raise InvalidInputError(f"{self.path}: safetensors header length {length} is bad")
        raw = self._reader.read(LENGTH_BYTES, length)
        header = parse_header(raw, size - LENGTH_BYTES - length)
        for tensor in header.tensors:
            self._dtype(tensor)  # refuse a type this framework cannot hold before any data
        return {t.name: t for t in header.tensors}, header.metadata, header.data_start

    def _dtype(self, tensor: TensorInfo) -> Any:
        if self._framework == "np":
            found = _NUMPY.get(tensor.dtype)
            if found is None:
                raise UnsupportedError(
                    f"{tensor.name}: {tensor.dtype} has no numpy type; load with framework='pt'"
                )
            return found
        import torch  # noqa: PLC0415 - torch only when asked for

        name = _TORCH.get(tensor.dtype)
        if name is None or not hasattr(torch, name):
            raise UnsupportedError(f"{tensor.name}: {tensor.dtype} is not supported by torch")
        return getattr(torch, name)

    def _empty(self, tensor: TensorInfo) -> Any:
        dtype = self._dtype(tensor)
        if self._framework == "np":
            return np.empty(tensor.shape, dtype=dtype)
        import torch  # noqa: PLC0415

        return torch.empty(tensor.shape, dtype=dtype)

    def _view_of(self, buffer: np.ndarray[Any, Any], tensor: TensorInfo) -> Any:
        dtype = self._dtype(tensor)
        piece = buffer[tensor.begin : tensor.end]
        if self._framework == "np":
            return piece.view(dtype).reshape(tensor.shape)
        import torch  # noqa: PLC0415

        itemsize = torch.empty((), dtype=dtype).element_size()
        raw = torch.from_numpy(piece)
        if tensor.begin % itemsize:
            raw = raw.clone()  # a misaligned tensor gets its own aligned copy
        return raw.view(dtype).reshape(tensor.shape)

    def _staged(self, tensor: TensorInfo, into: Any = None) -> Any:
        """A device tensor filled a slice at a time through a wiped pinned buffer."""
        import torch  # noqa: PLC0415

        dtype = self._dtype(tensor)
        target = into
        if target is None:
            target = torch.empty(tensor.shape, dtype=dtype, device=self._device)
        flat = target.view(-1).view(torch.uint8) if target.numel() else target
        total = tensor.end - tensor.begin
        stage = torch.empty(min(self._stage_bytes, max(total, 1)), dtype=torch.uint8)
        if target.device.type == "cuda":
            stage = stage.pin_memory()
        try:
            done = 0
            while done < total:
                take = min(len(stage), total - done)
                window = stage[:take]
                self._reader.read_into(
                    self._data_start + tensor.begin + done, _memory(window.numpy()), _THREADS
                )
                flat[done : done + take].copy_(window)
                done += take
            if target.device.type == "cuda":
                torch.cuda.synchronize(target.device)
        finally:
            stage.zero_()
        return target


def _memory(array: np.ndarray[Any, Any]) -> memoryview:
    return memoryview(array)  # type: ignore[arg-type] # numpy arrays are buffers


def _nbytes(array: Any) -> int:
    return (
        int(array.nbytes) if isinstance(array, np.ndarray) else array.numel() * array.element_size()
    )


def _is_host(array: Any) -> bool:
    return isinstance(array, np.ndarray) or array.device.type == "cpu"


def _bytes_of(array: Any) -> memoryview:
    """The writable bytes behind a contiguous numpy array or CPU torch tensor."""
    if isinstance(array, np.ndarray):
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise InvalidInputError("a target array must be contiguous and writable")
        return _memory(array.reshape(-1).view(np.uint8))
    if not array.is_contiguous():
        raise InvalidInputError("a target tensor must be contiguous")
    import torch  # noqa: PLC0415

    if array.numel() == 0:
        return memoryview(bytearray())
    return memoryview(array.view(-1).view(torch.uint8).numpy())
