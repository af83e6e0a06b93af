"""Fuzzing of the Xet formats: xorbs, chunk headers and records, shards.

test_parser_properties.py checks that random and randomly mutated bytes are refused cleanly.
Here: valid xorbs and shards built by the encoders come back unchanged, and structure-aware
mutations (size, scheme and count fields rewritten, the parts a parser trusts most) are either
refused cleanly or decode to exactly what their headers announce; decompression stays bounded.
`@example`s are the bugs these properties found, kept as regressions.
"""

from __future__ import annotations

import struct
import time
import tracemalloc
from typing import Any

import lz4.frame
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.xet import shards, xorbs
from tests.support import xetwire

# Failures print the falsifying example and a `@reproduce_failure` blob to paste back in.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def said(error: InvalidInputError) -> None:
    assert error.message.strip(), f"a refusal must say why: {type(error).__name__}"


# --- Xet xorbs ------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=16))
@example(b"")  # was an IndexError
@example(b"\x00" * 7)
def test_chunk_headers_of_any_length(header: bytes) -> None:
    try:
        parsed = xorbs.parse_header(header)
    except InvalidInputError as exc:
        said(exc)
        return
    assert len(header) == xorbs.HEADER_BYTES
    assert 0 < parsed.raw_size <= xorbs.MAX_CHUNK and parsed.stored_size > 0
    assert parsed.scheme in {0, 1, 2}


CHUNK_DATA = st.one_of(
    st.binary(min_size=1, max_size=3000),
    st.tuples(st.binary(min_size=1, max_size=8), st.integers(1, 500)).map(lambda t: t[0] * t[1]),
)


@FUZZ
@given(
    st.lists(st.tuples(CHUNK_DATA, st.sampled_from([0, 1, 2])), min_size=1, max_size=5),
    st.sampled_from([1, 3, 8, 100, 1 << 20]),
    st.booleans(),
)
def test_xorbs_round_trip(chunks: list[tuple[bytes, int]], piece: int, footer: bool) -> None:
    body = b"".join(xetwire.chunk_record(data, scheme) for data, scheme in chunks)
    sent = body + (b"XETBLOB" + bytes(40) if footer else b"")
    parser = xorbs.XorbParser()
    parsed = []
    for start in range(0, len(sent), piece):
        parsed.extend(parser.feed(sent[start : start + piece]))
    parser.finish()
    assert [c.raw for c in parsed] == [data for data, _ in chunks]
    assert b"".join(c.record for c in parsed) == body
    assert [c.compressed for c in parsed] == [scheme != 0 for _, scheme in chunks]


@st.composite
def resized_records(draw: st.DrawFn) -> bytes:
    """Valid chunk records whose size fields, scheme or version are rewritten: the parts a
    parser trusts most. Random bytes almost never hit them."""
    data = draw(CHUNK_DATA)
    record = bytearray(xetwire.chunk_record(data, draw(st.sampled_from([0, 1, 2]))))
    field = draw(st.sampled_from(["stored", "raw", "scheme", "version", "body"]))
    if field in {"stored", "raw"}:
        at = 1 if field == "stored" else 5
        old = int.from_bytes(record[at : at + 3], "little")
        new = draw(st.sampled_from([0, 1, old - 1, old + 1, 2 * old, 0xFFFFFF]))
        record[at : at + 3] = max(0, min(new, 0xFFFFFF)).to_bytes(3, "little")
    elif field == "scheme":
        record[4] = draw(st.integers(0, 255))
    elif field == "version":
        record[0] = draw(st.integers(1, 255))
    elif len(record) > 8:
        at = draw(st.integers(8, len(record) - 1))
        record[at] ^= draw(st.integers(1, 255))
    tail = draw(st.sampled_from([b"", xetwire.chunk_record(b"next", 1), b"\x00" * 5]))
    return bytes(record) + tail


@FUZZ
@given(resized_records(), st.sampled_from([1, 8, 4096]))
def test_accepted_chunks_are_exactly_their_announced_size(body: bytes, piece: int) -> None:
    parser = xorbs.XorbParser()
    parsed = []
    try:
        for start in range(0, len(body), piece):
            parsed.extend(parser.feed(body[start : start + piece]))
        parser.finish()
    except InvalidInputError as exc:
        said(exc)
        return
    for chunk in parsed:
        header = xorbs.parse_header(chunk.record[: xorbs.HEADER_BYTES])
        assert len(chunk.raw) == header.raw_size
        assert len(chunk.record) == xorbs.HEADER_BYTES + header.stored_size
    assert b"".join(c.record for c in parsed) == body


@FUZZ
@given(
    st.one_of(
        CHUNK_DATA.map(lz4.frame.compress),
        st.binary(max_size=200),
        CHUNK_DATA.map(lz4.frame.compress).map(lambda b: b[: len(b) // 2]),
        CHUNK_DATA.map(lambda d: lz4.frame.compress(d) + lz4.frame.compress(d)),
    ),
    st.integers(1, xorbs.MAX_CHUNK),
    st.sampled_from([1, 2]),
)
def test_decoded_chunks_never_exceed_their_header(
    stored: bytes, raw_size: int, scheme: int
) -> None:
    header = xorbs.ChunkHeader(len(stored), scheme, raw_size)
    try:
        raw = xorbs.decode_chunk(header, stored)
    except InvalidInputError as exc:
        said(exc)
        return
    assert len(raw) == raw_size


def test_a_decompression_bomb_is_stopped_at_the_announced_size() -> None:
    """A 4 MiB LZ4 frame that inflates to 1 GiB, in a chunk that claims 64 KiB."""
    compressor = lz4.frame.LZ4FrameCompressor()
    zeros = bytes(16 << 20)
    bomb = compressor.begin() + b"".join(compressor.compress(zeros) for _ in range(64))
    bomb += compressor.flush()
    assert len(bomb) < 16 << 20  # fits a chunk header's 3-byte stored size
    header = xorbs.parse_header(xorbs.encode_record(1, 64 << 10, bomb)[:8])
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError):
            xorbs.decode_chunk(header, bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"decoding allocated {peak} bytes"


# --- Xet shards -----------------------------------------------------------------------------
HASHES = st.binary(min_size=32, max_size=32).filter(lambda h: h != b"\xff" * 32)
U32 = st.integers(0, 2**32 - 1)
TERMS = st.tuples(HASHES, st.integers(0, 1000), st.integers(1, 1000), U32).map(
    lambda t: (t[0], t[1], t[1] + t[2], t[3])
)
FILES = st.tuples(HASHES, st.lists(TERMS, max_size=4), st.booleans(), st.none() | HASHES).flatmap(
    lambda f: st.tuples(
        st.just(f[0]),
        st.just(f[1]),
        st.lists(HASHES, min_size=len(f[1]), max_size=len(f[1])) if f[2] else st.none(),
        st.just(f[3]),
    )
)
# What the hub keeps of a xorb: chunks of at most MAX_CHUNK bytes (sums fit the u32 fields).
XORBS = st.tuples(
    HASHES,
    st.lists(
        st.builds(shards.XorbChunk, HASHES, U32, st.integers(0, xorbs.MAX_CHUNK)), max_size=5
    ).map(tuple),
).map(lambda x: shards.XorbRecord(*x))


@FUZZ
@given(st.lists(FILES, max_size=3), st.lists(st.lists(CHUNK_DATA, max_size=3), max_size=3), HASHES)
def test_shards_round_trip(
    files: list[tuple[bytes, list[Any], list[bytes] | None, bytes | None]],
    xorb_chunks: list[list[bytes]],
    xorb_hash: bytes,
) -> None:
    data = xetwire.shard_bytes(
        [xetwire.file_entry(*f) for f in files],
        [xetwire.xorb_entry(xorb_hash, chunks) for chunks in xorb_chunks],
    )
    parsed = shards.parse_shard(data)
    assert [
        (
            r.file_hash,
            [(t.xorb, t.start, t.end, t.length) for t in r.terms],
            r.range_hashes,
            r.sha256,
        )
        for r in parsed.files
    ] == [(h, terms, tuple(p) if p is not None else None, s) for h, terms, p, s in files]
    assert [[c.length for c in x.chunks] for x in parsed.xorbs] == [
        [len(c) for c in chunks] for chunks in xorb_chunks
    ]
    for record, chunks in zip(parsed.xorbs, xorb_chunks, strict=True):
        offsets = [sum(map(len, chunks[:i])) for i in range(len(chunks))]
        assert [c.offset for c in record.chunks] == offsets


@FUZZ
@given(st.lists(XORBS, max_size=4), HASHES, U32)
def test_dedup_shards_round_trip_with_their_footer(
    records: list[shards.XorbRecord], key: bytes, expiry: int
) -> None:
    parsed = shards.parse_shard(shards.dedup_shard(records, key, expiry))
    assert parsed.files == ()
    assert sorted(parsed.xorbs, key=lambda x: x.xorb_hash) == sorted(
        records, key=lambda x: x.xorb_hash
    )


UPLOAD = xetwire.plan_upload(bytes(range(256)) * 900)
DEDUP = shards.dedup_shard(shards.parse_shard(UPLOAD.shard).xorbs, bytes(32), 0)


@st.composite
def recounted_shards(draw: st.DrawFn) -> bytes:
    """A valid shard with one 48-byte entry's count, flag or size words rewritten."""
    data = bytearray(draw(st.sampled_from([UPLOAD.shard, DEDUP])))
    entry = draw(st.integers(0, len(data) // shards.ENTRY - 1))
    word = draw(st.integers(32, 44).map(lambda w: w - w % 4))
    value = draw(st.sampled_from([0, 1, 2, 3, 2**31, 2**30, 2**32 - 1, 2**31 + 2**30]) | U32)
    struct.pack_into("<I", data, entry * shards.ENTRY + word, value)
    cut = draw(st.sampled_from([None, -1, -48, -200]))
    return bytes(data[:cut] if cut is not None else data)


@FUZZ
@given(recounted_shards())
def test_recounted_shards_parse_or_are_refused_cleanly(data: bytes) -> None:
    started = time.monotonic()
    try:
        parsed = shards.parse_shard(data)
    except InvalidInputError as exc:
        said(exc)
        return
    finally:
        assert time.monotonic() - started < 5
    # What was accepted holds no more entries than the bytes can carry.
    entries = sum(len(f.terms) + 1 for f in parsed.files) + sum(
        len(x.chunks) + 1 for x in parsed.xorbs
    )
    assert entries * shards.ENTRY <= len(data)
