"""Building xorbs in storage: new chunks go to the xorb's own pack blob, known ones are referenced.

A pack holds chunks back to back: raw bytes, or compressed Xet chunk records where compression
pays. A xorb's record says, run by run, which blob and offset hold its chunks and in which form,
so a client xorb that repeats chunks the hub has costs only its new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from kaiyuan.core.models import Codec, StoredXorb, XorbSpan
from kaiyuan.core.ports import BlobStore, BlobWriter
from kaiyuan.services.xet import hashing
from kaiyuan.services.xet.xorbs import HEADER_BYTES, MAX_XORB_BYTES, MAX_XORB_CHUNKS


@dataclass(frozen=True, slots=True)
class Place:
    """Where one chunk is stored: `stored` bytes at `offset` of `blob` (None: the open pack)."""

    blob: str | None
    offset: int
    stored: int
    codec: Codec


def place_in(xorb: StoredXorb, index: int) -> Place:
    """Where chunk `index` of a stored xorb lives."""
    span, offset = xorb.span_of(index)
    stored = xorb.stored_ends[index] - xorb.stored_start(index)
    return Place(span.blob_sha256, offset, stored, span.codec)


@dataclass(slots=True)
class _Span:
    first: int
    blob: str | None  # None: this xorb's own pack, whose address is known only when it closes
    offset: int
    length: int  # stored bytes
    codec: Codec


class XorbBuilder:
    """Collects chunks for one xorb; `close` stores the pack and gives the xorb's record."""

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs
        self._writer: BlobWriter | None = None
        self._spans: list[_Span] = []
        self.hashes: list[bytes] = []
        self.ends: list[int] = []
        self.stored_ends: list[int] = []
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

    def add_new(
        self, chunk: bytes, chunk_hash: bytes, record: bytes | None = None, codec: Codec = Codec.RAW
    ) -> int:
        """Append a chunk the hub lacks to this xorb's pack; its index.

        The pack gets the raw bytes, or `record` (the chunk compressed per `codec`) when given.
        """
        if self._writer is None:
            self._writer = self._blobs.writer()
        stored = chunk if record is None else record
        self._writer.write(stored)
        place = Place(None, self.pack_size, len(stored), codec if record is not None else Codec.RAW)
        index = self.add_known(chunk_hash, len(chunk), place)
        self.pack_size += len(stored)
        return index

    def add_known(self, chunk_hash: bytes, length: int, place: Place) -> int:
        """Append a chunk of `length` raw bytes stored at `place`; its index."""
        last = self._spans[-1] if self._spans else None
        if (
            last is not None
            and last.blob == place.blob
            and last.codec == place.codec
            and last.offset + last.length == place.offset
        ):
            last.length += place.stored
        else:
            self._spans.append(
                _Span(len(self.hashes), place.blob, place.offset, place.stored, place.codec)
            )
        self.size += length
        self.hashes.append(chunk_hash)
        self.ends.append(self.size)
        self.stored_ends.append((self.stored_ends[-1] if self.stored_ends else 0) + place.stored)
        return len(self.hashes) - 1

    def own_place(self, index: int) -> Place:
        """Where chunk `index` of this open xorb is stored (blob None: its own pack)."""
        for span in reversed(self._spans):
            if span.first <= index:
                start = self.stored_ends[span.first - 1] if span.first else 0
                chunk_start = self.stored_ends[index - 1] if index else 0
                stored = self.stored_ends[index] - chunk_start
                return Place(span.blob, span.offset + chunk_start - start, stored, span.codec)
        raise IndexError(index)

    def xorb_hash(self) -> bytes:
        starts = [0, *self.ends[:-1]]
        return hashing.xorb_hash(
            [(h, end - start) for h, start, end in zip(self.hashes, starts, self.ends, strict=True)]
        )

    def close(self) -> StoredXorb:
        digest = hashing.to_hex(self.xorb_hash())
        pack = self._writer.commit().sha256 if self._writer is not None else None
        spans = tuple(
            XorbSpan(
                span.first,
                span.blob if span.blob is not None else str(pack),
                span.offset,
                span.codec,
            )
            for span in self._spans
        )
        return StoredXorb(
            digest,
            tuple(self.hashes),
            tuple(self.ends),
            tuple(self.stored_ends),
            spans,
            pack,
            self.pack_size,
        )

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
