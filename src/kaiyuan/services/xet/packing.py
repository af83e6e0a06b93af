"""Packs: the raw bytes of one xorb's chunks back to back in one blob, plus its chunk table."""

from __future__ import annotations

from kaiyuan.core.models import StoredXorb
from kaiyuan.core.ports import BlobStore
from kaiyuan.services.xet import hashing
from kaiyuan.services.xet.xorbs import HEADER_BYTES, MAX_XORB_BYTES, MAX_XORB_CHUNKS


class PackWriter:
    """Collects chunks for one xorb; `close` stores the pack and gives the xorb's record."""

    def __init__(self, blobs: BlobStore) -> None:
        self._writer = blobs.writer()
        self.hashes: list[bytes] = []
        self.ends: list[int] = []
        self.size = 0

    def __len__(self) -> int:
        return len(self.hashes)

    def has_room(self, length: int) -> bool:
        """Whether one more chunk keeps the xorb within the protocol's limits when served."""
        count = len(self.hashes) + 1
        return count <= MAX_XORB_CHUNKS and self.size + length + count * HEADER_BYTES <= (
            MAX_XORB_BYTES
        )

    def add(self, chunk: bytes, chunk_hash: bytes) -> int:
        """Append a chunk; its index in the xorb."""
        self._writer.write(chunk)
        self.size += len(chunk)
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
        info = self._writer.commit()
        return StoredXorb(digest, info.sha256, tuple(self.hashes), tuple(self.ends))

    def abort(self) -> None:
        self._writer.abort()
