"""Building xorbs in storage: new chunks go to the xorb's own pack blob, known ones are referenced.

A pack is the raw bytes of chunks back to back. A xorb's record says, run by run, which blob and
offset hold its chunks, so a client xorb that repeats chunks the hub has costs only its new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from kaiyuan.core.models import StoredXorb, XorbSpan
from kaiyuan.core.ports import BlobStore, BlobWriter
from kaiyuan.services.xet import hashing
from kaiyuan.services.xet.xorbs import HEADER_BYTES, MAX_XORB_BYTES, MAX_XORB_CHUNKS


@dataclass(slots=True)
class _Span:
    first: int
    blob: str | None  # None: this xorb's own pack, whose address is known only when it closes
    offset: int
    length: int


class XorbBuilder:
    """Collects chunks for one xorb; `close` stores the pack and gives the xorb's record."""

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs
        self._writer: BlobWriter | None = None
        self._spans: list[_Span] = []
        self.hashes: list[bytes] = []
        self.ends: list[int] = []
        self.size = 0
        self.pack_size = 0

    def __len__(self) -> int:
        return len(self.hashes)

    def has_room(self, length: int) -> bool:
        """Whether one more chunk keeps the xorb within the protocol's limits when served."""
        count = len(self.hashes) + 1
        return count <= MAX_XORB_CHUNKS and self.size + length + count * HEADER_BYTES <= (
            MAX_XORB_BYTES
        )

    def add_new(self, chunk: bytes, chunk_hash: bytes) -> int:
        """Append a chunk the hub lacks (its bytes go to this xorb's pack); its index."""
        if self._writer is None:
            self._writer = self._blobs.writer()
        self._writer.write(chunk)
        index = self._append(chunk_hash, len(chunk), None, self.pack_size)
        self.pack_size += len(chunk)
        return index

    def add_known(self, chunk_hash: bytes, length: int, blob: str | None, offset: int) -> int:
        """Append a chunk whose bytes already sit at `offset` of `blob` (None: this pack)."""
        return self._append(chunk_hash, length, blob, offset)

    def own_offset(self, index: int) -> tuple[str | None, int]:
        """Where chunk `index` of this open xorb lives: (blob, or None for its own pack; offset)."""
        for span in reversed(self._spans):
            if span.first <= index:
                start = self.ends[span.first - 1] if span.first else 0
                chunk_start = self.ends[index - 1] if index else 0
                return span.blob, span.offset + chunk_start - start
        raise IndexError(index)

    def _append(self, chunk_hash: bytes, length: int, blob: str | None, offset: int) -> int:
        last = self._spans[-1] if self._spans else None
        if last is not None and last.blob == blob and last.offset + last.length == offset:
            last.length += length
        else:
            self._spans.append(_Span(len(self.hashes), blob, offset, length))
        self.size += length
        self.hashes.append(chunk_hash)
        self.ends.append(self.size)
        return len(self.hashes) - 1

    def xorb_hash(self) -> bytes:
        starts = [0, *self.ends[:-1]]
        return hashing.xorb_hash(
            [(h, end - start) for h, start, end in zip(self.hashes, starts, self.ends, strict=True)]
        )

    def close(self) -> StoredXorb:
        digest = hashing.to_hex(self.xorb_hash())
        pack = self._writer.commit().sha256 if self._writer is not None else None
        spans = tuple(
            XorbSpan(span.first, span.blob if span.blob is not None else str(pack), span.offset)
            for span in self._spans
        )
        return StoredXorb(digest, tuple(self.hashes), tuple(self.ends), spans, pack, self.pack_size)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
