"""Property-based fuzzing of every parser that reads input from outside.

For any input, a parser either returns a well-formed value or raises InvalidInputError (or a
subclass) with a message — never another exception, never a hang. Inputs are random bytes and,
where that finds more, *mutations of valid documents* (flipped, cut, spliced bytes).
"""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.ids import (
    MAX_NAME_LENGTH,
    RepoId,
    normalize_folder,
    validate_path,
    validate_ref_name,
    validate_sha1,
    validate_sha256,
)
from kaiyuan.http.context import check_json_depth, parse_json
from kaiyuan.http.hfcompat.ndjson import parse_commit
from kaiyuan.services.cards import parse_card
from kaiyuan.services.commits import DeleteFile, PutLfsFile, PutRegularFile
from kaiyuan.services.xet import shards, xorbs
from tests.support import xetwire

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def said(error: InvalidInputError) -> None:
    if not error.message.strip():
        pytest.fail(f"a refusal must say why: {type(error).__name__}")


def refused_cleanly(call: object) -> None:
    """Run `call`; the only acceptable failure is InvalidInputError with a message."""
    assert callable(call)
    try:
        call()
    except InvalidInputError as exc:
        said(exc)


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """A valid document with a few bytes flipped, a piece cut out, or junk spliced in."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "splice", "truncate"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif action == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            del data[at:]
    return bytes(data)


# --- repository ids, paths, revisions -------------------------------------------------------
NAMEISH = st.text(
    alphabet=st.sampled_from("abcXYZ019._-/\\ \x00\x7f模型é:~^@{}"), min_size=0, max_size=40
)


@FUZZ
@given(NAMEISH)
@example("a/b/c")
@example("../x")
@example("a\x00/b")
def test_repo_ids_accepted_are_safe(value: str) -> None:
    try:
        repo_id = RepoId.parse(value)
    except InvalidInputError:
        return
    for part in (repo_id.namespace, repo_id.name):
        assert 1 <= len(part) <= MAX_NAME_LENGTH
        assert part not in {".", ".."}
        assert not set(part) & set("/\\\x00 :~^@{}")
        assert part[0].isascii() and part[0].isalnum()
    assert RepoId.parse(str(repo_id)) == repo_id


@FUZZ
@given(st.one_of(NAMEISH, st.text(max_size=60)))
@example("a/../b")
@example("C:/x")
@example("a/.git/config")
@example("\ud800")
@example("a\x85b")  # NEL, a C1 control
@example("w\x9f.bin")
def test_paths_accepted_are_relative_and_idempotent(value: str) -> None:
    try:
        path = validate_path(value)
    except InvalidInputError:
        return
    parts = path.split("/")
    assert not path.startswith("/") and "\\" not in path
    assert all(p not in {"", ".", ".."} for p in parts)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in path)
    path.encode("utf-8")  # surrogates were refused
    assert validate_path(path) == path
    assert normalize_folder(path + "/") == path


@FUZZ
@given(st.one_of(NAMEISH, st.text(max_size=60)))
@example("refs/heads/../x")
@example("x.lock")
@example("@")
@example("a" * 40)
@example("main\x85")
@example("dev\ud800")
def test_ref_names_accepted_follow_git_rules(value: str) -> None:
    try:
        name = validate_ref_name(value)
    except InvalidInputError:
        return
    assert ".." not in name and "//" not in name and "@{" not in name
    assert not name.startswith(("/", "-", ".")) and not name.endswith(("/", ".", ".lock"))
    assert not any(ord(c) <= 0x20 or 0x7F <= ord(c) <= 0x9F for c in name)
    assert not set(name) & set("~^:?*[\\")
    name.encode("utf-8")  # surrogates were refused


@FUZZ
@given(st.text(max_size=70))
def test_digests_are_lowercase_hex_of_the_right_length(value: str) -> None:
    for check, length in ((validate_sha256, 64), (validate_sha1, 40)):
        try:
            check(value)
        except InvalidInputError:
            continue
        assert len(value) == length and set(value) <= set("0123456789abcdef")


# --- JSON bodies ----------------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=30,
)


def depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@FUZZ
@given(JSON_VALUES, st.integers(1, 6))
def test_json_depth_limit_is_exact(value: object, limit: int) -> None:
    body = json.dumps(value).encode()
    if depth(value) <= limit:
        assert parse_json(body, limit) == json.loads(body) or not body.strip()
    else:
        with pytest.raises(InvalidInputError, match="deeper"):
            parse_json(body, limit)


@FUZZ
@given(st.binary(max_size=200))
@example(b"[" * 100_000)
@example(b"9" * 5000)
@example(b'{"a": "\\ud800"}')
@example(b'{"\\udc00": 1}')
@example(b'[["\\udfff"]]')
@example(b'{"a": NaN}')
def test_json_garbage_is_refused_cleanly(body: bytes) -> None:
    try:
        value = parse_json(body)
    except InvalidInputError as exc:
        said(exc)
        return
    # Whatever is accepted is Unicode text all the way down: the database can store it.
    json.dumps(value, ensure_ascii=False).encode("utf-8")


def test_deep_json_is_checked_without_recursion() -> None:
    nested: object = []
    for _ in range(50_000):
        nested = [nested]
    with pytest.raises(InvalidInputError):
        check_json_depth(nested, 32)


# --- NDJSON commits -------------------------------------------------------------------------
VALID_COMMIT = b"\n".join(
    json.dumps(line).encode()
    for line in [
        {"key": "header", "value": {"summary": "s", "description": "d"}},
        {"key": "file", "value": {"path": "a.txt", "content": "eA==", "encoding": "base64"}},
        {
            "key": "lfsFile",
            "value": {"path": "w.bin", "algo": "sha256", "oid": "a" * 64, "size": 3},
        },
        {"key": "deletedFile", "value": {"path": "old.txt"}},
    ]
)


def test_the_valid_commit_parses() -> None:
    request = parse_commit(VALID_COMMIT)
    assert [type(op) for op in request.operations] == [PutRegularFile, PutLfsFile, DeleteFile]


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated(VALID_COMMIT)))
@example(
    b'{"key":"header","value":{"summary":"s"}}\n{"key":"file","value":{"path":"a","content":"%%%","encoding":"base64"}}'
)
@example(b'{"key":"header","value":{"summary":"s"}}\n{"key":"file","value":{"path":["a"]}}')
@example(
    b'{"key":"header","value":{"summary":"s"}}\n{"key":"lfsFile","value":{"path":"a","oid":"x","size":-1}}'
)
def test_commit_bodies_parse_or_are_refused_cleanly(body: bytes) -> None:
    try:
        request = parse_commit(body)
    except InvalidInputError as exc:
        said(exc)
        return
    # The parser guarantees the shape; the commit service then checks the values, and any
    # value that passed the parser must get a clean answer there too.
    assert isinstance(request.title, str)
    for op in request.operations:
        assert isinstance(op.path, str)
        refused_cleanly(lambda op=op: validate_path(op.path.rstrip("/")))
        if isinstance(op, PutLfsFile):
            assert isinstance(op.sha256, str)
            assert op.size is None or (isinstance(op.size, int) and not isinstance(op.size, bool))
            refused_cleanly(lambda op=op: validate_sha256(op.sha256))
        if isinstance(op, PutRegularFile):
            assert isinstance(op.content, bytes)


# --- YAML cards -----------------------------------------------------------------------------
VALID_CARD = "---\nlicense: apache-2.0\nbase_model: a/b\ntags: [x, y]\nlanguage: zh\n---\n# Card\n"
BOMB = "---\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b]\n---\n"


@FUZZ
@given(
    st.one_of(
        st.text(max_size=300),
        mutated(VALID_CARD.encode()).map(lambda b: b.decode("utf-8", "replace")),
    )
)
@example(BOMB)
@example("---\n" + "[" * 5000 + "\n---\n")
@example("---\n- a\n- b\n---\n")
@example("---\n!!python/object:os.system ls\n---\n")
@example("---\n? [a, b]\n: c\n---\n")
@example("---\nlicense: [1, 2]\n---\n")
@example("---\nx: 1")
@example("---\nx: .nan\n---\n")
@example("---\nx: 1.0e+400\n---\n")
@example("---\nx: !!binary aGk=\n---\n")
@example("---\nx: !!set {a: null}\n---\n")
@example("---\nx: !!int abc\n---\n")
@example('---\nx: "\\ud800"\n---\n')
@example("---\ndate: 2024-01-31\n---\n")
@example("---\r\nlicense: mit\r\n---\r\n")
@example('---\nx: "a\u2028b"\n---\n')
def test_cards_parse_to_a_mapping_or_are_refused_cleanly(text: str) -> None:
    try:
        data = parse_card(text)
    except InvalidInputError as exc:
        said(exc)
        return
    if data is None:
        return
    assert isinstance(data, dict)
    assert all(isinstance(k, str) for k in data)
    found = data.get("license")
    assert found is None or isinstance(found, str) or all(isinstance(v, str) for v in found)
    # What is accepted is served as the JSON `cardData`: it must serialise, finite and UTF-8.
    json.dumps(data, allow_nan=False, ensure_ascii=False).encode("utf-8")


def test_card_dates_stay_as_written_and_line_separators_survive() -> None:
    assert parse_card("---\ndate: 2024-01-31\n---\n") == {"date": "2024-01-31"}
    assert parse_card('---\nx: "a\u2028b"\n---\n') == {"x": "a\u2028b"}
    assert parse_card("---\r\nlicense: mit\r\n---\r\nbody") == {"license": "mit"}


# --- Xet xorbs and shards -------------------------------------------------------------------
CHUNKS = [bytes([i]) * (700 + 13 * i) + bytes(range(256)) for i in range(4)]
VALID_XORBS = {
    scheme: b"".join(xetwire.chunk_record(c, scheme) for c in CHUNKS) for scheme in (0, 1, 2)
}


def parse_xorb(body: bytes, piece: int) -> list[bytes]:
    parser = xorbs.XorbParser()
    raw = []
    for start in range(0, len(body), piece):
        raw.extend(c.raw for c in parser.feed(body[start : start + piece]))
    parser.finish()
    return raw


@pytest.mark.parametrize("scheme", [0, 1, 2])
def test_valid_xorbs_parse_whole_in_any_pieces(scheme: int) -> None:
    for piece in (1, 7, 100, 1 << 20):
        assert parse_xorb(VALID_XORBS[scheme], piece) == CHUNKS


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=200),
        mutated(VALID_XORBS[0]),
        mutated(VALID_XORBS[1]),
        mutated(VALID_XORBS[2]),
    ),
    st.sampled_from([1, 5, 64, 4096]),
)
def test_xorbs_parse_or_are_refused_cleanly(body: bytes, piece: int) -> None:
    try:
        chunks = parse_xorb(body, piece)
    except InvalidInputError as exc:
        said(exc)
        return
    # Whatever was accepted decoded within the announced sizes.
    assert chunks
    assert all(len(c) <= xorbs.MAX_CHUNK for c in chunks)


def test_a_tiny_xorb_cannot_claim_a_huge_chunk() -> None:
    """Bounded decompression: the header's raw size is checked before anything is inflated."""
    zeros = xetwire.chunk_record(bytes(60_000), 1)
    lying = zeros[:5] + (0xFFFFFF).to_bytes(3, "little") + zeros[8:]  # claims 16 MiB raw
    with pytest.raises(InvalidInputError):
        parse_xorb(lying, 4096)


@FUZZ
@given(st.binary(max_size=12))
@example(b"")
@example(b"\x00" * 7)
def test_chunk_headers_parse_or_are_refused_cleanly(header: bytes) -> None:
    refused_cleanly(lambda: xorbs.parse_header(header))


UPLOAD = xetwire.plan_upload(bytes(range(256)) * 900)


def test_the_valid_shard_parses() -> None:
    parsed = shards.parse_shard(UPLOAD.shard)
    assert len(parsed.files) == 1 and len(parsed.xorbs) == 1


@FUZZ
@given(st.one_of(st.binary(max_size=400), mutated(UPLOAD.shard)))
@example(shards.TAG + struct.pack("<QQ", 2, 200))
@example(shards.TAG + struct.pack("<QQ", 2, 200) + xetwire.BOOKEND)
@example(UPLOAD.shard[:-1])
def test_shards_parse_or_are_refused_cleanly(data: bytes) -> None:
    try:
        parsed = shards.parse_shard(data)
    except InvalidInputError as exc:
        said(exc)
        return
    for record in parsed.files:
        for term in record.terms:
            assert term.start <= term.end
    for xorb in parsed.xorbs:
        assert all(c.length >= 0 for c in xorb.chunks)
