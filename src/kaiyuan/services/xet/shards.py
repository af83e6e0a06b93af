"""The shard format (MDB v2): file reconstructions and xorb chunk lists, little-endian throughout.

Uploaded shards tell the hub which files a client assembled from which xorb chunk ranges; the
hub answers global-dedup queries with shards too. Parsing is strict: every count is checked
against the bytes that are actually there, and anything left over is an error.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.xet.hashing import HASH_BYTES

TAG = b"HFRepoMetaData\x00" + bytes(
    [85, 105, 103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205, 209, 74, 169]
)
HEADER_VERSION = 2
FOOTER_VERSION = 1
ENTRY = 48
FOOTER_BYTES = 200
MAX_SHARD_BYTES = 64 * 1024 * 1024
_WITH_VERIFICATION = 1 << 31
_WITH_METADATA = 1 << 30
_BOOKEND = b"\xff" * HASH_BYTES + bytes(16)


@dataclass(frozen=True, slots=True)
class FileTerm:
    """Chunks [start, end) of one xorb; `length` is their total uncompressed size."""

    xorb: bytes
    start: int
    end: int
    length: int


@dataclass(frozen=True, slots=True)
class FileRecord:
    file_hash: bytes
    terms: tuple[FileTerm, ...]
    range_hashes: tuple[bytes, ...] | None
    sha256: bytes | None


@dataclass(frozen=True, slots=True)
class XorbChunk:
    chunk_hash: bytes
    offset: int  # uncompressed byte offset of the chunk within the xorb
    length: int


@dataclass(frozen=True, slots=True)
class XorbRecord:
    xorb_hash: bytes
    chunks: tuple[XorbChunk, ...]


@dataclass(frozen=True, slots=True)
class Shard:
    files: tuple[FileRecord, ...]
    xorbs: tuple[XorbRecord, ...]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int, what: str) -> bytes:
        if self.pos + size > len(self.data):
            raise InvalidInputError(f"shard is truncated inside {what}")
        piece = self.data[self.pos : self.pos + size]
        self.pos += size
        return piece

    def count(self, number: int, size: int, what: str) -> None:
        # Refuse absurd counts before allocating anything for them.
        if number * size > len(self.data) - self.pos:
            raise InvalidInputError(f"shard announces more {what} than it holds")


def parse_shard(data: bytes) -> Shard:
    """A shard from its bytes (the footer may be absent); InvalidInput on any inconsistency."""
    if len(data) > MAX_SHARD_BYTES:
        raise InvalidInputError(f"a shard is at most {MAX_SHARD_BYTES} bytes")
    reader = _Reader(data)
    header = reader.take(ENTRY, "the header")
    if header[:32] != TAG:
        raise InvalidInputError("not a shard: the header tag is wrong")
    version, footer_size = struct.unpack_from("<QQ", header, 32)
    if version != HEADER_VERSION:
        raise InvalidInputError(f"shard header version {version} is not supported")
    files = _read_files(reader)
    xorbs = _read_xorbs(reader)
    if reader.pos < len(data):
        # A full shard goes on with lookup tables and a footer; the hub rebuilds its own
        # indexes, so only the footer's framing is checked.
        footer_at = len(data) - FOOTER_BYTES
        if footer_size != FOOTER_BYTES or footer_at < reader.pos:
            raise InvalidInputError("shard has unexpected bytes after its sections")
        (footer_version,) = struct.unpack_from("<Q", data, footer_at)
        (footer_offset,) = struct.unpack_from("<Q", data, len(data) - 8)
        if footer_version != FOOTER_VERSION or footer_offset != footer_at:
            raise InvalidInputError("shard footer is malformed")
    return Shard(tuple(files), tuple(xorbs))


def _read_files(reader: _Reader) -> list[FileRecord]:
    files: list[FileRecord] = []
    while True:
        head = reader.take(ENTRY, "a file header")
        if head == _BOOKEND:
            return files
        if head[:32] == _BOOKEND[:32]:
            raise InvalidInputError("malformed file-section bookend")
        flags, count = struct.unpack_from("<II", head, 32)
        if flags & ~(_WITH_VERIFICATION | _WITH_METADATA):
            raise InvalidInputError(f"unknown file flags {flags:#x}")
        reader.count(count, ENTRY, "file terms")
        terms = []
        for _ in range(count):
            entry = reader.take(ENTRY, "a file term")
            _, length, start, end = struct.unpack_from("<IIII", entry, 32)
            if end <= start:
                raise InvalidInputError("a file term names an empty chunk range")
            terms.append(FileTerm(entry[:32], start, end, length))
        range_hashes = None
        if flags & _WITH_VERIFICATION:
            reader.count(count, ENTRY, "verification entries")
            range_hashes = tuple(reader.take(ENTRY, "a verification entry")[:32] for _ in terms)
        sha256 = None
        if flags & _WITH_METADATA:
            sha256 = reader.take(ENTRY, "file metadata")[:32]
        files.append(FileRecord(head[:32], tuple(terms), range_hashes, sha256))


def _read_xorbs(reader: _Reader) -> list[XorbRecord]:
    xorbs: list[XorbRecord] = []
    while True:
        head = reader.take(ENTRY, "a xorb header")
        if head == _BOOKEND:
            return xorbs
        if head[:32] == _BOOKEND[:32]:
            raise InvalidInputError("malformed xorb-section bookend")
        _, count, _, _ = struct.unpack_from("<IIII", head, 32)
        reader.count(count, ENTRY, "xorb chunks")
        chunks = []
        for _ in range(count):
            entry = reader.take(ENTRY, "a xorb chunk")
            offset, length = struct.unpack_from("<II", entry, 32)
            chunks.append(XorbChunk(entry[:32], offset, length))
        xorbs.append(XorbRecord(head[:32], tuple(chunks)))


def dedup_shard(xorbs: Sequence[XorbRecord], key: bytes, key_expiry: int) -> bytes:
    """A global-dedup answer: no files, the xorbs' chunk lists with chunk hashes under `key`.

    The chunk hashes in `xorbs` must already be keyed; `key` is written to the footer so the
    client can key its own chunk hashes the same way and match only chunks it really has.
    """
    out = bytearray(TAG + struct.pack("<QQ", HEADER_VERSION, FOOTER_BYTES))
    file_offset = len(out)
    out += _BOOKEND
    cas_offset = len(out)
    xorb_lookup: list[tuple[int, int]] = []
    chunk_lookup: list[tuple[int, int, int]] = []
    entry = 0
    raw_sum = stored_sum = 0
    for xorb in sorted(xorbs, key=lambda x: x.xorb_hash):
        raw_total = sum(chunk.length for chunk in xorb.chunks)
        stored_total = raw_total + 8 * len(xorb.chunks)
        raw_sum, stored_sum = raw_sum + raw_total, stored_sum + stored_total
        xorb_lookup.append((_truncated(xorb.xorb_hash), entry))
        out += xorb.xorb_hash + struct.pack("<IIII", 0, len(xorb.chunks), raw_total, stored_total)
        for index, chunk in enumerate(xorb.chunks):
            chunk_lookup.append((_truncated(chunk.chunk_hash), entry, index))
            out += chunk.chunk_hash + struct.pack("<II", chunk.offset, chunk.length) + bytes(8)
        entry += 1 + len(xorb.chunks)
    out += _BOOKEND
    # Lookup tables (keys: a hash's first little-endian word), which clients search.
    file_lookup_offset = len(out)
    xorb_lookup_offset = len(out)
    for key_word, at in xorb_lookup:
        out += struct.pack("<QI", key_word, at)
    chunk_lookup_offset = len(out)
    for key_word, at, index in sorted(chunk_lookup):
        out += struct.pack("<QII", key_word, at, index)
    footer_offset = len(out)
    out += struct.pack(
        "<QQQQQQQQQ",
        FOOTER_VERSION,
        file_offset,
        cas_offset,
        file_lookup_offset,
        0,
        xorb_lookup_offset,
        len(xorb_lookup),
        chunk_lookup_offset,
        len(chunk_lookup),
    )
    out += key + struct.pack("<QQ", int(time.time()), key_expiry) + bytes(48)
    out += struct.pack("<QQQQ", stored_sum, raw_sum, stored_sum, footer_offset)
    return bytes(out)


def _truncated(value: bytes) -> int:
    return int.from_bytes(value[:8], "little")
