"""The xorb wire format: chunks, each an 8-byte header and its (maybe compressed) bytes.

Header: version (1 byte, 0), compressed size (3 bytes LE), scheme (1 byte: 0 none, 1 LZ4 frame,
2 byte-grouping-4 then LZ4 frame), uncompressed size (3 bytes LE). Clients send xorbs without
the footer that xet-core can append; one is accepted and ignored, since the hub rebuilds every
fact it holds about a xorb from the chunks themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import lz4.frame
import numpy as np

from kaiyuan.core.errors import IntegrityError, InvalidInputError
from kaiyuan.services.xet.chunking import MAX_CHUNK

HEADER_BYTES = 8
MAX_XORB_BYTES = 64 * 1024 * 1024
MAX_XORB_CHUNKS = 8 * 1024
_FOOTER_IDENT = b"XETBLOB"
_SCHEME_NONE, _SCHEME_LZ4, SCHEME_BG4_LZ4 = 0, 1, 2
# The hub's storage scheme (see compression.py); never accepted from clients or sent to them.
SCHEME_HUB_BG4_ZSTD = 0x80


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    stored_size: int
    scheme: int
    raw_size: int


@dataclass(frozen=True, slots=True)
class ParsedChunk:
    """A chunk as received: its raw bytes, and its record (header and stored bytes)."""

    raw: bytes
    record: bytes
    compressed: bool


def encode_header(raw_size: int) -> bytes:
    """The header of an uncompressed chunk (how the hub serves chunks)."""
    size = raw_size.to_bytes(3, "little")
    return bytes([0]) + size + bytes([_SCHEME_NONE]) + size


def parse_header(header: bytes, *, stored_by_hub: bool = False) -> ChunkHeader:
    if len(header) != HEADER_BYTES:
        raise InvalidInputError(f"a chunk header is {HEADER_BYTES} bytes, not {len(header)}")
    version, scheme = header[0], header[4]
    stored = int.from_bytes(header[1:4], "little")
    raw = int.from_bytes(header[5:8], "little")
    if version != 0:
        raise InvalidInputError(f"chunk header version {version} is not supported")
    known = (_SCHEME_NONE, _SCHEME_LZ4, SCHEME_BG4_LZ4)
    if scheme not in known and not (stored_by_hub and scheme == SCHEME_HUB_BG4_ZSTD):
        raise InvalidInputError(f"unknown chunk compression scheme {scheme}")
    if not 0 < raw <= MAX_CHUNK:
        raise InvalidInputError(f"chunk of {raw} bytes; chunks hold 1 to {MAX_CHUNK} bytes")
    if scheme == _SCHEME_NONE and stored != raw:
        raise InvalidInputError("an uncompressed chunk must store exactly its size")
    if stored == 0:
        raise InvalidInputError("chunk with no stored bytes")
    return ChunkHeader(stored, scheme, raw)


def decode_chunk(header: ChunkHeader, stored: bytes) -> bytes:
    """The raw chunk of a Xet record; InvalidInput if it does not decompress to its size.

    Records in the hub's own scheme are decoded by `compression.decode_records`.
    """
    if header.scheme == _SCHEME_NONE:
        return stored
    # Bounded: a small frame must not inflate into gigabytes before the size check.
    decompressor = lz4.frame.LZ4FrameDecompressor()
    try:
        raw: bytes = decompressor.decompress(stored, max_length=header.raw_size + 1)
    except RuntimeError as exc:
        raise InvalidInputError(f"chunk does not decompress: {exc}") from None
    if not decompressor.eof or decompressor.unused_data:
        raise InvalidInputError("chunk is not exactly one LZ4 frame of the announced size")
    if len(raw) != header.raw_size:
        raise IntegrityError(
            f"chunk decompressed to {len(raw)} bytes, its header says {header.raw_size}"
        )
    if header.scheme == SCHEME_BG4_LZ4:
        raw = _ungroup4(raw)
    return raw


def group4(raw: bytes) -> bytes:
    """Byte grouping: bytes 0, 4, 8, ... then 1, 5, 9, ... and so on."""
    src = np.frombuffer(raw, dtype=np.uint8)
    return np.concatenate([src[g::4] for g in range(4)]).tobytes()


def encode_record(scheme: int, raw_size: int, body: bytes) -> bytes:
    return (
        bytes([0])
        + len(body).to_bytes(3, "little")
        + bytes([scheme])
        + raw_size.to_bytes(3, "little")
        + body
    )


def _ungroup4(grouped: bytes) -> bytes:
    """Undo byte grouping: group g holds bytes g, g+4, g+8, ... of the chunk."""
    n = len(grouped)
    whole, rest = divmod(n, 4)
    sizes = [whole + (1 if g < rest else 0) for g in range(4)]
    src = np.frombuffer(grouped, dtype=np.uint8)
    out = np.empty(n, dtype=np.uint8)
    offset = 0
    for g, size in enumerate(sizes):
        out[g::4] = src[offset : offset + size]
        offset += size
    return out.tobytes()


class XorbParser:
    """Incremental parser of an uploaded xorb: feed the body in pieces, get raw chunks out."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._footer = False
        self.chunk_count = 0
        self.stored_bytes = 0

    def feed(self, data: bytes) -> Iterator[ParsedChunk]:
        self.stored_bytes += len(data)
        if self.stored_bytes > MAX_XORB_BYTES + MAX_XORB_CHUNKS * HEADER_BYTES + (1 << 20):
            raise InvalidInputError(f"a xorb is at most {MAX_XORB_BYTES} bytes")
        if self._footer:
            return
        self._buffer += data
        while len(self._buffer) >= HEADER_BYTES:
            if self._buffer.startswith(_FOOTER_IDENT):
                self._footer = True
                self._buffer.clear()
                return
            header = parse_header(bytes(self._buffer[:HEADER_BYTES]))
            end = HEADER_BYTES + header.stored_size
            if len(self._buffer) < end:
                return
            record = bytes(self._buffer[:end])
            del self._buffer[:end]
            self.chunk_count += 1
            if self.chunk_count > MAX_XORB_CHUNKS:
                raise InvalidInputError(f"a xorb holds at most {MAX_XORB_CHUNKS} chunks")
            raw = decode_chunk(header, record[HEADER_BYTES:])
            yield ParsedChunk(raw, record, header.scheme != _SCHEME_NONE)

    def finish(self) -> None:
        """InvalidInput if the body ended inside a chunk or held no chunk at all."""
        if self._buffer and not self._footer:
            raise InvalidInputError("xorb is truncated: the body ends inside a chunk")
        if self.chunk_count == 0:
            raise InvalidInputError("xorb holds no chunks")
