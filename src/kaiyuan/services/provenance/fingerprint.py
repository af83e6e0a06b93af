"""A revision's fingerprint: tensor digests for exact copies, a sketch for near ones.

One sequential pass over each weight file hashes every tensor's stored bytes (BLAKE3, which
keeps up with the disk), so an exact or partial copy (a re-upload, a vocabulary-pruned model
that kept its layers) is found by digest alone. The sketch reads only the embedding rows of a
few hundred tokens and four layers' attention matrices.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from queue import Queue
from threading import Thread

import blake3
import numpy as np

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.provenance import TensorDigest
from kaiyuan.services.provenance.model import OpenedModel
from kaiyuan.services.provenance.sketch import sketch
from kaiyuan.services.provenance.source import ParsedWeights, StoredTensor, one_blas_thread

# BLAKE3 hashes large pieces on every core (about 2 GB/s a core here): hashing then keeps up
# with reading from the page cache.
_THREADS = blake3.blake3.AUTO


@dataclass(frozen=True, slots=True)
class FingerprintResult:
    summary: dict[str, object]
    tensors: tuple[TensorDigest, ...]
    sketch: bytes | None


@one_blas_thread
def fingerprint(model: OpenedModel) -> FingerprintResult:
    """Digests of every tensor, the sketch, and a summary of the model's shape."""
    digests = tuple(d for parsed in model.parsed for d in _digests(parsed))
    layout = model.layout
    found = sketch(layout)
    parameters = sum(int(np.prod(t.shape)) for p in model.parsed for t in p.tensors)
    summary: dict[str, object] = {
        "format": model.files.format,
        "files": [p.file.name for p in model.parsed],
        "architecture": layout.architecture or None,
        "layers": len(layout.layers),
        "width": layout.width,
        "heads": layout.heads,
        "kv_heads": layout.kv_heads,
        "vocabulary": len(layout.vocabulary) if layout.vocabulary is not None else None,
        "embedding_rows": layout.embedding.shape[0],
        "parameters": parameters,
        "tensors": len(digests),
        "sketch_tokens": len(found.tokens) if found is not None else 0,
    }
    return FingerprintResult(summary, digests, found.to_bytes() if found is not None else None)


def _digests(parsed: ParsedWeights) -> list[TensorDigest]:
    """One pass over the file: each tensor's byte range hashed as the bytes stream by."""
    located = sorted(
        (t for t in parsed.tensors if t.byte_range[1] > t.byte_range[0]),
        key=lambda t: t.byte_range,
    )
    placeless = [t for t in parsed.tensors if t.byte_range[1] <= t.byte_range[0]]
    result = [d for t in placeless if (d := _hashed_whole(parsed, t)) is not None]
    if not located:
        return result
    start, end = located[0].byte_range[0], max(t.byte_range[1] for t in located)
    position = start
    current = 0
    hasher = blake3.blake3(max_threads=_THREADS)
    for piece in _prefetched(parsed.file.stream(start, end)):
        offset = 0
        while offset < len(piece) and current < len(located):
            tensor = located[current]
            begin, stop = tensor.byte_range
            if position + offset < begin:  # bytes between tensors (alignment padding)
                offset += min(begin - (position + offset), len(piece) - offset)
                continue
            take = min(stop - (position + offset), len(piece) - offset)
            hasher.update(memoryview(piece)[offset : offset + take])  # no copy of the slice
            offset += take
            if position + offset >= stop:
                result.append(_digest(parsed, tensor, hasher.hexdigest()))
                hasher = blake3.blake3(max_threads=_THREADS)
                current += 1
        position += len(piece)
    return result


def _prefetched(pieces: Iterator[bytes], depth: int = 2) -> Iterator[bytes]:
    """The pieces, read one or two ahead in another thread while the caller hashes.

    Reading and BLAKE3 both release the GIL, so a fingerprint takes about as long as the slower
    of the two instead of their sum.
    """
    queue: Queue[bytes | BaseException | None] = Queue(maxsize=depth)

    def read() -> None:
        try:
            for piece in pieces:
                queue.put(piece)
        except BaseException as exc:  # handed to the consumer, which re-raises it  # noqa: BLE001
            queue.put(exc)
            return
        queue.put(None)

    reader = Thread(target=read, name="kaiyuan-fingerprint-read", daemon=True)
    reader.start()
    while True:
        item = queue.get()
        if item is None:
            break
        if isinstance(item, BaseException):
            raise item
        yield item
    reader.join()


def _hashed_whole(parsed: ParsedWeights, tensor: StoredTensor) -> TensorDigest | None:
    """A tensor stored elsewhere: an ONNX external-data file, or values split over fields."""
    hasher = blake3.blake3(max_threads=_THREADS)
    stored_at = getattr(tensor, "stored_at", None)  # (file, begin, end) of ONNX external data
    if stored_at is not None:
        source, begin, end = stored_at
        for piece in source.stream(begin, end):
            hasher.update(piece)
    else:
        stored = getattr(tensor, "stored_values", None)
        if stored is None:
            return None
        try:
            hasher.update(np.ascontiguousarray(stored()).tobytes())
        except InvalidInputError:  # a type the reader does not decode: not hashed
            return None
    return _digest(parsed, tensor, hasher.hexdigest())


def _digest(parsed: ParsedWeights, tensor: StoredTensor, digest: str) -> TensorDigest:
    return TensorDigest(parsed.file.name, tensor.name, tensor.dtype, tuple(tensor.shape), digest)
