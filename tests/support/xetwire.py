"""A small Xet client for tests: build xorbs and shards byte by byte, to send good and bad ones.

Hashes come from `kaiyuan.services.xet.hashing`, which the unit tests check against hf_xet.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import lz4.frame

from kaiyuan.services.xet import hashing, shards
from kaiyuan.services.xet.chunking import chunk_bytes


def chunk_record(data: bytes, scheme: int = 1) -> bytes:
    """One serialized chunk: header and body (0 none, 1 LZ4, 2 byte-grouping-4 + LZ4)."""
    if scheme == 0:
        body = data
    elif scheme == 1:
        body = lz4.frame.compress(data)
    else:
        grouped = b"".join(data[g::4] for g in range(4))
        body = lz4.frame.compress(grouped)
    return (
        bytes([0])
        + len(body).to_bytes(3, "little")
        + bytes([scheme])
        + len(data).to_bytes(3, "little")
        + body
    )


def serialize_xorb(chunks: list[bytes], scheme: int = 1) -> bytes:
    return b"".join(chunk_record(c, scheme) for c in chunks)


def refs(chunks: list[bytes]) -> list[tuple[bytes, int]]:
    return [(hashing.chunk_hash(c), len(c)) for c in chunks]


@dataclass
class Upload:
    """Everything a client sends for one file stored in one new xorb."""

    data: bytes
    chunks: list[bytes]
    xorb: bytes
    xorb_hex: str
    file_hex: str
    sha256: str
    shard: bytes


def file_entry(
    file_hash: bytes,
    terms: list[tuple[bytes, int, int, int]],
    proofs: list[bytes] | None,
    sha256: bytes | None,
) -> bytes:
    flags = (1 << 31 if proofs is not None else 0) | (1 << 30 if sha256 is not None else 0)
    out = bytearray(file_hash + struct.pack("<II", flags, len(terms)) + bytes(8))
    for xorb, start, end, length in terms:
        out += xorb + struct.pack("<IIII", 0, length, start, end)
    for proof in proofs or []:
        out += proof + bytes(16)
    if sha256 is not None:
        out += sha256 + bytes(16)
    return bytes(out)


def xorb_entry(xorb_hash: bytes, chunks: list[bytes]) -> bytes:
    out = bytearray(xorb_hash + struct.pack("<IIII", 0, len(chunks), sum(map(len, chunks)), 0))
    offset = 0
    for chunk in chunks:
        out += hashing.chunk_hash(chunk) + struct.pack("<II", offset, len(chunk)) + bytes(8)
        offset += len(chunk)
    return bytes(out)


BOOKEND = b"\xff" * 32 + bytes(16)


def shard_bytes(files: list[bytes], xorbs: list[bytes]) -> bytes:
    head = shards.TAG + struct.pack("<QQ", 2, 200)
    return head + b"".join(files) + BOOKEND + b"".join(xorbs) + BOOKEND


def plan_upload(data: bytes, scheme: int = 1) -> Upload:
    chunks = chunk_bytes(data)
    xorb_raw = hashing.xorb_hash(refs(chunks))
    file_raw = hashing.file_hash(refs(chunks))
    sha = hashlib.sha256(data).hexdigest()
    proof = hashing.range_hash([hashing.chunk_hash(c) for c in chunks])
    entry = file_entry(
        file_raw, [(xorb_raw, 0, len(chunks), len(data))], [proof], hashing.from_hex(sha)
    )
    shard = shard_bytes([entry], [xorb_entry(xorb_raw, chunks)])
    return Upload(
        data,
        chunks,
        serialize_xorb(chunks, scheme),
        hashing.to_hex(xorb_raw),
        hashing.to_hex(file_raw),
        sha,
        shard,
    )
