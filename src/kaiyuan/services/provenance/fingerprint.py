"""A revision's fingerprint: tensor digests for exact copies, a sketch for near ones.

One sequential pass over each weight file hashes every tensor's stored bytes, so an exact or
partial copy (a re-upload, a vocabulary-pruned model that kept its layers) is found by digest
alone.

The digest is XXH3-128, not a cryptographic hash. A tensor digest is a key for finding copies:
every relation the hub records is verified on the weights themselves (`compare`), and the
files' integrity rests on their SHA-256 (checked at upload) and on signatures. XXH3 hashes
about 12 GB/s on one core here against 2.3 GB/s for BLAKE3, which is what lets a fingerprint
cost little more than reading the file (docs/performance.md); 128 bits make an accidental
collision among the hub's tensors negligible. Digests carry the algorithm as a prefix
(`xxh3-128:`), so no digest made another way ever equals one.

The sketch reads only the embedding rows of a hundred-odd tokens and four layers' attention
matrices; it is computed while the files are hashed.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from queue import Queue
from threading import Thread

import numpy as np
import xxhash

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.provenance import TensorDigest
from kaiyuan.services.provenance.model import OpenedModel
from kaiyuan.services.provenance.sketch import sketch
from kaiyuan.services.provenance.source import (
    Buffer,
    ParsedWeights,
    StoredTensor,
    one_blas_thread,
)

DIGEST_PREFIX = "xxh3-128:"


@dataclass(frozen=True, slots=True)
class FingerprintResult:
    summary: dict[str, object]
    tensors: tuple[TensorDigest, ...]
    sketch: bytes | None


@one_blas_thread
def fingerprint(model: OpenedModel) -> FingerprintResult:
    """Digests of every tensor, the sketch, and a summary of the model's shape."""
    layout = model.layout
    # Hashing (XXH3 and the reads release the GIL) runs beside the sketch (Python and BLAS).
    with ThreadPoolExecutor(1, thread_name_prefix="kaiyuan-fingerprint-hash") as pool:
        hashing = pool.submit(lambda: tuple(d for p in model.parsed for d in _digests(p)))
        found = sketch(layout)
        digests = hashing.result()
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
    hasher = xxhash.xxh3_128()
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
                hasher.reset()
                current += 1
        position += len(piece)
    return result


def _prefetched(pieces: Iterator[Buffer], depth: int = 2) -> Iterator[Buffer]:
    """The pieces, read one or two ahead in another thread while the caller hashes.

    Reading and hashing both release the GIL, so a fingerprint takes about as long as the slower
    of the two instead of their sum.
    """
    queue: Queue[Buffer | BaseException | None] = Queue(maxsize=depth)

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
    hasher = xxhash.xxh3_128()
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
    return TensorDigest(
        parsed.file.name, tensor.name, tensor.dtype, tuple(tensor.shape), DIGEST_PREFIX + digest
    )
