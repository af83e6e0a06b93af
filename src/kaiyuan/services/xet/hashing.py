"""Xet hashes: keyed BLAKE3 over chunks, a Merkle aggregation for xorbs and files, range proofs.

A hash is 32 raw bytes. On the wire it is written as hex with each 8-byte word reversed (the
words are little-endian u64 values printed most-significant digit first).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from blake3 import blake3

from kaiyuan.core.digests import xet_hex, xet_raw
from kaiyuan.core.errors import InvalidInputError

HASH_BYTES = 32

_DATA_KEY = bytes(
    [102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28,
     157, 228, 33, 16, 155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41]
)  # fmt: skip
_NODE_KEY = bytes(
    [1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230,
     93, 221, 83, 111, 55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63]
)  # fmt: skip
_VERIFICATION_KEY = bytes(
    [127, 24, 87, 214, 206, 86, 237, 102, 18, 127, 249, 19, 231, 165, 195, 243,
     164, 205, 38, 213, 181, 219, 73, 230, 65, 36, 152, 127, 40, 251, 148, 195]
)  # fmt: skip
_FILE_KEY = bytes(HASH_BYTES)

# The aggregation tree: groups of 2..9 nodes, cut after a node whose last word is 0 mod 4.
_BRANCHING = 4
_MAX_GROUP = 2 * _BRANCHING + 1

_HEX = re.compile(r"^[0-9a-f]{64}$")

ChunkRef = tuple[bytes, int]  # (chunk hash, chunk length)


def chunk_hash(data: bytes | memoryview) -> bytes:
    return blake3(data, key=_DATA_KEY).digest()


def keyed(data: bytes, key: bytes) -> bytes:
    """A hash under a caller's key (dedup answers hide chunk hashes this way)."""
    return blake3(data, key=key).digest()


to_hex = xet_hex


def from_hex(text: str) -> bytes:
    """The raw hash for a wire string; InvalidInput unless it is 64 lowercase hex digits."""
    if not isinstance(text, str) or not _HEX.match(text):
        raise InvalidInputError("a Xet hash is 64 lowercase hexadecimal digits")
    return xet_raw(text)


def _merge(group: Sequence[ChunkRef]) -> ChunkRef:
    text = "".join(f"{to_hex(h)} : {n}\n" for h, n in group)
    return blake3(text.encode("ascii"), key=_NODE_KEY).digest(), sum(n for _, n in group)


def _next_cut(nodes: Sequence[ChunkRef], start: int) -> int:
    remaining = len(nodes) - start
    if remaining <= 2:  # noqa: PLR2004 - groups have at least two members
        return len(nodes)
    end = start + min(_MAX_GROUP, remaining)
    for i in range(start + 2, end):
        if int.from_bytes(nodes[i][0][24:32], "little") % _BRANCHING == 0:
            return i + 1
    return end


def merkle_root(chunks: Sequence[ChunkRef]) -> bytes:
    """The aggregated hash of a chunk sequence (all zeros when empty)."""
    if not chunks:
        return bytes(HASH_BYTES)
    level = list(chunks)
    while len(level) > 1:
        merged: list[ChunkRef] = []
        start = 0
        while start < len(level):
            cut = _next_cut(level, start)
            merged.append(_merge(level[start:cut]))
            start = cut
        level = merged
    return level[0][0]


def xorb_hash(chunks: Sequence[ChunkRef]) -> bytes:
    return merkle_root(chunks)


def file_hash(chunks: Sequence[ChunkRef]) -> bytes:
    """The Xet file id: the Merkle root keyed once more (all zeros for an empty file)."""
    if not chunks:
        return bytes(HASH_BYTES)
    return keyed(merkle_root(chunks), _FILE_KEY)


def range_hash(chunk_hashes: Sequence[bytes]) -> bytes:
    """The proof a shard gives for each file term: the hashes of the chunks it names."""
    return keyed(b"".join(chunk_hashes), _VERIFICATION_KEY)
