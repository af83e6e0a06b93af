"""Xet formats against the specification and against hf_xet, the reference client."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import hf_xet
import lz4.frame
import numpy as np
import pytest

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.xet import hashing, shards
from kaiyuan.services.xet.chunking import MAX_CHUNK, MIN_CHUNK, TABLE, Chunker, chunk_bytes
from kaiyuan.services.xet.compression import compress_chunk, decode_records
from kaiyuan.services.xet.xorbs import XorbParser, encode_header
from tests.support import xetwire

MASK = 0xFFFF000000000000


def reference_cuts(data: bytes) -> list[int]:
    """The specification's pseudocode, byte by byte (slow; small inputs only)."""
    table = [int(x) for x in TABLE]
    cuts, h, start = [], 0, 0
    for i, byte in enumerate(data):
        h = ((h << 1) + table[byte]) & 0xFFFFFFFFFFFFFFFF
        size = i + 1 - start
        if size < MIN_CHUNK:
            continue
        if size >= MAX_CHUNK or h & MASK == 0:
            cuts.append(i + 1)
            start, h = i + 1, 0
    if start < len(data):
        cuts.append(len(data))
    return cuts


def sample(seed: int) -> bytes:
    rng = random.Random(seed)
    return rng.randbytes(300_000) + bytes(300_000) + rng.randbytes(70_001)


def ends(chunks: list[bytes]) -> list[int]:
    total, out = 0, []
    for c in chunks:
        total += len(c)
        out.append(total)
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_chunker_matches_the_specification_pseudocode(seed: int) -> None:
    data = sample(seed)
    assert ends(chunk_bytes(data)) == reference_cuts(data)


def test_chunk_sizes_respect_the_bounds() -> None:
    chunks = chunk_bytes(os.urandom(3_000_000) + bytes(1_000_000))
    assert all(MIN_CHUNK <= len(c) <= MAX_CHUNK for c in chunks[:-1])
    assert len(chunks[-1]) <= MAX_CHUNK
    assert max(len(c) for c in chunks) == MAX_CHUNK  # the zero run forces maximum-size cuts


def test_streaming_in_any_pieces_gives_the_same_chunks() -> None:
    data = sample(3)
    whole = chunk_bytes(data)
    for piece in (1, 63, 4096, 77_777, len(data)):
        chunker = Chunker()
        out: list[bytes] = []
        for i in range(0, len(data), piece):
            out.extend(chunker.feed(data[i : i + piece]))
        last = chunker.finish()
        if last is not None:
            out.append(last)
        assert out == whole, piece


def test_tiny_and_empty_inputs() -> None:
    assert chunk_bytes(b"") == []
    assert chunk_bytes(b"x") == [b"x"]
    assert chunk_bytes(bytes(MIN_CHUNK - 1)) == [bytes(MIN_CHUNK - 1)]


@pytest.mark.parametrize(
    "content",
    [
        b"hello",
        bytes(MIN_CHUNK),
        bytes(3 * MAX_CHUNK + 5),
        random.Random(7).randbytes(2_500_000),
    ],
    ids=["tiny", "one-min-chunk", "zeros", "random"],
)
def test_file_hash_equals_hf_xet(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(content)
    expected = hf_xet.hash_files([str(path)])[0].hash
    assert hashing.to_hex(hashing.file_hash(xetwire.refs(chunk_bytes(content)))) == expected


def test_hash_strings_reverse_each_eight_byte_word() -> None:
    raw = bytes(range(32))
    # The specification's example (api.md) drops the "10" of the third word; this is its intent.
    text = "07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918"
    assert hashing.to_hex(raw) == text
    assert hashing.from_hex(text) == raw


@pytest.mark.parametrize("bad", ["", "00", "G" * 64, "A" * 64, "0" * 63, "0" * 65, None, 7])
def test_malformed_hash_strings_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        hashing.from_hex(bad)  # type: ignore[arg-type]


def test_empty_sequences_hash_to_zero() -> None:
    assert hashing.xorb_hash([]) == bytes(32)
    assert hashing.file_hash([]) == bytes(32)


# --- xorbs --------------------------------------------------------------------------------------
def parse_xorb(body: bytes, piece: int = 10_000) -> list[bytes]:
    parser = XorbParser()
    out: list[bytes] = []
    for i in range(0, len(body), piece):
        out.extend(chunk.raw for chunk in parser.feed(body[i : i + piece]))
    parser.finish()
    return out


@pytest.mark.parametrize("scheme", [0, 1, 2])
def test_xorb_round_trip_for_every_compression_scheme(scheme: int) -> None:
    chunks = chunk_bytes(os.urandom(400_000) + bytes(200_003))
    body = xetwire.serialize_xorb(chunks, scheme)
    assert parse_xorb(body) == chunks
    assert list(decode_records([body[:1000], body[1000:]])) == chunks  # stored records read back


def test_compression_keeps_only_what_pays() -> None:
    weights = (np.random.default_rng(1).standard_normal(32_768) * 0.02).astype(np.float32)
    bf16 = (weights.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    for mode, ratio in (("zstd", 0.75), ("lz4", 0.9)):
        compressed = compress_chunk(bf16, mode)
        assert compressed is not None, mode
        record, _ = compressed
        assert len(record) < ratio * len(bf16), (mode, len(record))
        assert list(decode_records([record, record])) == [bf16, bf16]
        assert compress_chunk(os.urandom(65_536), mode) is None  # random bytes stay raw
    assert compress_chunk(bf16, "none") is None


def test_corrupt_stored_records_are_detected() -> None:
    compressed = compress_chunk(bytes(range(256)) * 256)
    assert compressed is not None
    record = bytearray(compressed[0])
    record[20] ^= 0xFF
    with pytest.raises(InvalidInputError):
        list(decode_records([bytes(record)]))
    with pytest.raises(InvalidInputError):
        list(decode_records([compressed[0][:-3]]))


def test_a_footer_after_the_chunks_is_ignored() -> None:
    chunks = [b"a" * 100, b"b" * 3]
    body = xetwire.serialize_xorb(chunks) + b"XETBLOB" + os.urandom(200)
    assert parse_xorb(body) == chunks


def test_uncompressed_header_layout() -> None:
    assert encode_header(0x012345) == bytes([0, 0x45, 0x23, 0x01, 0, 0x45, 0x23, 0x01])


def header(stored: int, scheme: int, raw: int, version: int = 0) -> bytes:
    return (
        bytes([version])
        + stored.to_bytes(3, "little")
        + bytes([scheme])
        + raw.to_bytes(3, "little")
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", InvalidInputError),
        (header(5, 0, 5), InvalidInputError),  # truncated: no body
        (xetwire.chunk_record(b"abc")[:-1], InvalidInputError),
        (header(3, 0, 3, version=1) + b"abc", InvalidInputError),
        (header(3, 9, 3) + b"abc", InvalidInputError),
        (header(3, 0x80, 3) + b"abc", InvalidInputError),  # the hub's own scheme, not a client's
        (header(3, 0, 4) + b"abc", InvalidInputError),  # uncompressed sizes disagree
        (header(0, 1, 3), InvalidInputError),
        (header(3, 0, 0) + b"abc", InvalidInputError),
        (header(1, 0, MAX_CHUNK + 1) + b"a", InvalidInputError),
        (header(7, 1, 7) + b"garbage", InvalidInputError),
        (b"\x00" * 3, InvalidInputError),
    ],
    ids=[
        "empty",
        "no-body",
        "cut-short",
        "version",
        "scheme",
        "hub-scheme",
        "size-mismatch",
        "zero-stored",
        "zero-raw",
        "too-big",
        "not-lz4",
        "partial-header",
    ],
)
def test_malformed_xorbs_are_refused(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_xorb(body)


def test_an_lz4_bomb_is_stopped_at_the_announced_size() -> None:
    frame = lz4.frame.compress(bytes(50_000_000))
    with pytest.raises(InvalidInputError):
        parse_xorb(header(len(frame), 1, 1000) + frame)


def test_lz4_frame_with_trailing_bytes_is_refused() -> None:
    frame = lz4.frame.compress(b"abc") + b"junk"
    with pytest.raises(InvalidInputError):
        parse_xorb(header(len(frame), 1, 3) + frame)


# --- shards -------------------------------------------------------------------------------------
def test_shard_round_trip_of_a_planned_upload() -> None:
    upload = xetwire.plan_upload(os.urandom(500_000))
    shard = shards.parse_shard(upload.shard)
    (file,) = shard.files
    assert hashing.to_hex(file.file_hash) == upload.file_hex
    assert file.sha256 is not None
    assert hashing.to_hex(file.sha256) == upload.sha256
    (term,) = file.terms
    assert (term.start, term.end, term.length) == (0, len(upload.chunks), 500_000)
    (xorb,) = shard.xorbs
    assert [c.length for c in xorb.chunks] == [len(c) for c in upload.chunks]


def test_a_reference_shard_written_by_hf_xet_parses(tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    source.write_bytes(os.urandom(1_000_000))
    hf_xet.upload_files([str(source)], f"local://{tmp_path / 'cas'}", None, None, None, "model")
    found = sorted((tmp_path / "cas").rglob("*.mdb"))
    assert found
    expected = hf_xet.hash_files([str(source)])[0].hash
    for path in found:
        shard = shards.parse_shard(path.read_bytes())  # with lookup tables and footer
        (file,) = shard.files
        assert hashing.to_hex(file.file_hash) == expected


def test_dedup_answer_is_a_shard_with_keyed_chunk_hashes() -> None:
    upload = xetwire.plan_upload(os.urandom(300_000))
    key = os.urandom(32)
    record = shards.XorbRecord(
        hashing.from_hex(upload.xorb_hex),
        tuple(
            shards.XorbChunk(hashing.keyed(hashing.chunk_hash(c), key), 0, len(c))
            for c in upload.chunks
        ),
    )
    data = shards.dedup_shard([record], key, 123)
    parsed = shards.parse_shard(data)
    assert parsed.files == ()
    assert parsed.xorbs[0].chunks[0].chunk_hash == hashing.keyed(
        hashing.chunk_hash(upload.chunks[0]), key
    )
    assert data[-200 + 72 : -200 + 104] == key


def _valid_shard() -> bytes:
    return xetwire.plan_upload(os.urandom(100_000)).shard


@pytest.mark.parametrize(
    "mutate",
    [
        lambda _: b"",
        lambda s: s[:40],
        lambda s: b"X" + s[1:],
        lambda s: s[:32] + struct.pack("<Q", 3) + s[40:],
        lambda s: s[:-1],
        lambda s: s + b"junk",
        lambda s: s[: 48 + 36] + struct.pack("<I", 10**9) + s[48 + 40 :],
        lambda s: s[: 48 + 32] + struct.pack("<I", 1 << 20) + s[48 + 36 :],
        lambda s: s[:48] + xetwire.BOOKEND[:32] + bytes(16) + s[48 + 48 :],
    ],
    ids=[
        "empty",
        "header-only",
        "tag",
        "version",
        "truncated",
        "trailing",
        "count",
        "flags",
        "half-bookend",
    ],
)
def test_malformed_shards_are_refused(mutate: object) -> None:
    with pytest.raises(InvalidInputError):
        shards.parse_shard(mutate(_valid_shard()))  # type: ignore[operator]
