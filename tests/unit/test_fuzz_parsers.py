"""Fuzzing of the parsers of outside input: round trips, and what accepted input promises.

test_parser_properties.py checks that garbage is refused cleanly. This file adds the other half:
valid input built by an encoder comes back unchanged, and whatever a parser accepts is safe to
use downstream — paths cannot escape a folder, strings encode as UTF-8 (the database and git
objects need that), card metadata can be served as strict JSON (`cardData`; the responses here
use `allow_nan=False`). Inputs are hostile grammars (NaN, surrogate escapes, YAML tags, C1
controls), which reach deeper than random text. The Xet formats are in test_fuzz_xet.py.
`@example`s are the bugs these properties found, kept as regressions.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
import time
import unicodedata
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.ids import (
    MAX_NAME_LENGTH,
    RepoId,
    normalize_folder,
    validate_name,
    validate_namespace,
    validate_path,
    validate_ref_name,
)
from kaiyuan.http.context import parse_json
from kaiyuan.http.hfcompat.ndjson import parse_commit
from kaiyuan.services.cards import parse_card
from kaiyuan.services.commits import DeleteFile, DeleteFolder, PutLfsFile, PutRegularFile

# Failures print the falsifying example and a `@reproduce_failure` blob to paste back in.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=100)


def said(error: InvalidInputError) -> None:
    assert error.message.strip(), f"a refusal must say why: {type(error).__name__}"


def as_strict_json(value: object) -> bytes:
    """What Starlette's JSONResponse does with a value: it must not raise."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")


def is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- repository ids, paths, revisions -------------------------------------------------------
# Characters that have broken path and name checks somewhere: separators, dots, C0/C1 controls,
# NEL and other Unicode line breaks, bidi overrides, fullwidth dots, surrogates, a drive colon.
HOSTILE_CHARS = st.sampled_from(
    [
        *"aZ09._-/\\:~^@{}[]*? ",
        *["\x00", "\x01", "\x1f", "\x7f", "\x85", "\x9b", "\xa0", "\u2028", "\u202e", "\uff0e"],
        *["\ud800", "\udfff", "é", "模", "\U0001f600"],
    ]
)
HOSTILE_TEXT = st.one_of(
    st.text(HOSTILE_CHARS, max_size=40),
    st.lists(
        st.sampled_from(["a", ".", "..", "", ".git", "C:", "b.lock", "x\x85"]), max_size=6
    ).map("/".join),
    st.text(max_size=40),
)


def has_control(value: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in value)


@FUZZ
@given(HOSTILE_TEXT)
@example("a\x85b")  # NEL (C1 control) was accepted in paths
@example("x/\x9b[2J")  # CSI, a terminal escape, likewise
@example("a/.. /b")
@example("\uff0e\uff0e/x")
def test_accepted_paths_stay_inside_their_folder(value: str) -> None:
    try:
        path = validate_path(value)
    except InvalidInputError as exc:
        said(exc)
        return
    assert not has_control(path), "control characters in a path"
    assert is_text(path)
    assert not path.startswith("/") and "\\" not in path
    assert not re.match(r"[A-Za-z]:", path), "a Windows drive"
    # Normalised: nothing for a path library to collapse, so what is stored is what is served.
    assert posixpath.normpath(path) == path
    # Joined under a folder, it stays under that folder.
    assert posixpath.normpath(posixpath.join("/srv/repo", path)).startswith("/srv/repo/")
    assert validate_path(path) == path
    assert normalize_folder("/" + path + "//") == path


@FUZZ
@given(HOSTILE_TEXT)
@example("\ud800")  # a lone surrogate was accepted, then broke the database write (500)
@example("v1\x85")  # NEL was accepted
def test_accepted_ref_names_are_text_git_takes(value: str) -> None:
    try:
        name = validate_ref_name(value)
    except InvalidInputError as exc:
        said(exc)
        return
    assert is_text(name)
    assert not has_control(name) and " " not in name
    assert not set(name) & set("~^:?*[\\")
    assert all(part and not part.startswith(".") for part in name.split("/"))
    assert validate_ref_name(name) == name


VALID_NAMES = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9_]|[._-][A-Za-z0-9_]){0,20}\Z")


@FUZZ
@given(st.one_of(HOSTILE_TEXT, VALID_NAMES))
def test_accepted_names_are_plain_and_stable(value: str) -> None:
    try:
        name = validate_name(value)
    except InvalidInputError as exc:
        said(exc)
        return
    assert 1 <= len(name) <= MAX_NAME_LENGTH and name.isascii()
    assert name[0].isalnum() and name[-1] not in ".-"
    assert "--" not in name and ".." not in name and not name.endswith(".git")
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert validate_name(name) == name


@FUZZ
@given(VALID_NAMES, VALID_NAMES)
@example("api", "x")
@example("Datasets", "x")
@example("a", "b.git")
def test_repo_ids_round_trip(namespace: str, name: str) -> None:
    try:
        validate_namespace(namespace)
        validate_name(name)
    except InvalidInputError:
        with pytest.raises(InvalidInputError):
            RepoId.parse(f"{namespace}/{name}")
        return
    repo_id = RepoId.parse(f"{namespace}/{name}")
    assert (repo_id.namespace, repo_id.name) == (namespace, name)
    assert RepoId.parse(str(repo_id)) == repo_id


# --- JSON request bodies --------------------------------------------------------------------
JSON_TOKENS = st.sampled_from(
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "-1e400",
        "1e-400",
        "9" * 4301,
        "-0",
        '"\\ud800"',
        '"\\udfff\\ud800"',
        '"\\ud83d\\ude00"',
        '"\\u0000"',
        "true",
        "null",
        '"x"',
        "0.5",
    ]
)


@st.composite
def hostile_json(draw: st.DrawFn) -> bytes:
    """A JSON-like document assembled from tokens that Python's reader takes but JSON lacks."""
    token = draw(JSON_TOKENS)
    shape = draw(st.sampled_from(["bare", "list", "value", "key"]))
    if shape == "list":
        text = f"[{token}, {draw(JSON_TOKENS)}]"
    elif shape == "value":
        text = f'{{"a": {token}}}'
    elif shape == "key":
        text = f"{{{token}: 1}}"
    else:
        text = token
    return text.encode()


# Text with, now and then, a lone surrogate: JSON can carry one as an escape.
JSON_TEXT = st.text() | st.text(st.sampled_from(["a", "\ud800", "\udfff", "é", "\U0001f600"]))
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | JSON_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_TEXT, inner, max_size=4),
    max_leaves=25,
)


@FUZZ
@given(st.one_of(hostile_json(), st.binary(max_size=100)))
@example(b'{"tag": "\\ud800"}')  # a lone surrogate reached the database (500)
@example(b'{"\\udfff": 1}')
@example(b'["\\ud83d\\ude00"]')  # a surrogate pair is one character, and fine
def test_accepted_json_holds_only_text(body: bytes) -> None:
    try:
        value = parse_json(body)
    except InvalidInputError as exc:
        said(exc)
        return
    # Every string, key or value, encodes as UTF-8; nothing else changed (NaN and Infinity are
    # still read as Python reads them: no request field takes a float).
    assert is_text(json.dumps(value, ensure_ascii=False))
    assert json.dumps(value) == json.dumps(json.loads(body) if body.strip() else {})


@FUZZ
@given(JSON_VALUES, st.booleans())
def test_json_bodies_round_trip(value: object, ascii_only: bool) -> None:
    try:
        body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    except UnicodeEncodeError:
        body = json.dumps(value).encode()  # surrogates travel as escapes
    meant = json.loads(body)  # an escaped surrogate pair is one character
    if not is_text(json.dumps(meant, ensure_ascii=False)):
        # Only what the JSON escape allows but Unicode does not (lone surrogates) is refused.
        with pytest.raises(InvalidInputError, match="surrogate"):
            parse_json(body, max_depth=64)
        return
    assert parse_json(body, max_depth=64) == meant
    if is_text(json.dumps(value, ensure_ascii=False)):
        assert meant == value


# --- NDJSON commit bodies -------------------------------------------------------------------
PATHS = (
    st.lists(
        st.text(
            st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"], exclude_characters="/\\"),
            min_size=1,
            max_size=8,
        ).filter(lambda part: part not in {".", ".."} and part.lower() != ".git"),
        min_size=1,
        max_size=3,
    )
    .map("/".join)
    .filter(lambda path: not re.match(r"^[A-Za-z]:", path))
)  # no drive letters
OPERATIONS = st.one_of(
    st.builds(PutRegularFile, PATHS, st.binary(max_size=64)),
    st.builds(
        PutLfsFile,
        PATHS,
        st.text("0123456789abcdef", min_size=64, max_size=64),
        st.none() | st.integers(0, 1 << 60),
    ),
    st.builds(DeleteFile, PATHS),
    st.builds(DeleteFolder, PATHS.map(lambda p: p + "/")),
)


def ndjson_line(key: str, value: dict[str, Any], ascii_only: bool) -> bytes:
    return json.dumps({"key": key, "value": value}, ensure_ascii=ascii_only).encode("utf-8")


def wire(op: object) -> tuple[str, dict[str, Any]]:
    """How huggingface_hub writes each operation."""
    if isinstance(op, PutRegularFile):
        content = base64.b64encode(op.content).decode()
        return "file", {"path": op.path, "content": content, "encoding": "base64"}
    if isinstance(op, PutLfsFile):
        value: dict[str, Any] = {"path": op.path, "algo": "sha256", "oid": op.sha256}
        if op.size is not None:
            value["size"] = op.size
        return "lfsFile", value
    if isinstance(op, DeleteFile):
        return "deletedFile", {"path": op.path}
    assert isinstance(op, DeleteFolder)
    return "deletedFolder", {"path": op.path}


TEXT = st.text(st.characters(codec="utf-8"), max_size=30)


@FUZZ
@given(
    TEXT.filter(bool),
    TEXT,
    st.none() | st.text("0123456789abcdef", min_size=40, max_size=40),
    st.lists(OPERATIONS, max_size=6),
    st.booleans(),
    st.sampled_from([b"\n", b"\r\n", b"\n\n"]),
)
def test_commit_bodies_round_trip(
    summary: str,
    description: str,
    parent: str | None,
    operations: list[Any],
    ascii_only: bool,
    newline: bytes,
) -> None:
    header: dict[str, Any] = {"summary": summary, "description": description}
    if parent is not None:
        header["parentCommit"] = parent
    lines = [ndjson_line("header", header, ascii_only)]
    lines += [ndjson_line(*wire(op), ascii_only=ascii_only) for op in operations]
    request = parse_commit(newline.join(lines) + newline)
    assert (request.title, request.description, request.parent_commit) == (
        summary,
        description,
        parent,
    )
    assert request.operations == operations
    for op in request.operations:
        assert validate_path(op.path.rstrip("/")) == op.path.rstrip("/")


HOSTILE_STRINGS = st.sampled_from(
    ['"\\ud800"', '"a\\udfff"', '"\\u0000"', '"\\ud83d\\ude00"', '"x"', "NaN", "[]", "1"]
)


@FUZZ
@given(
    st.lists(
        st.tuples(st.sampled_from(["summary", "description", "parentCommit"]), HOSTILE_STRINGS),
        max_size=3,
    ),
    st.sampled_from(["file", "lfsFile", "deletedFile", "deletedFolder"]),
    st.sampled_from(["path", "oid", "content", "encoding", "algo"]),
    HOSTILE_STRINGS,
)
@example([("summary", '"\\ud800"')], "deletedFile", "oid", '"x"')  # surrogate title: 500
@example([("summary", '"x"')], "deletedFile", "path", '"a\\udfff"')
def test_commit_strings_are_text(
    header: list[tuple[str, str]], key: str, field: str, hostile: str
) -> None:
    fields = ", ".join(f'"{name}": {value}' for name, value in header)
    value = {"path": '"a.txt"', "oid": '"' + "a" * 64 + '"', "content": '"eA=="'}
    value[field] = hostile
    op = ", ".join(f'"{name}": {text}' for name, text in value.items())
    body = f'{{"key": "header", "value": {{{fields}}}}}\n{{"key": "{key}", "value": {{{op}}}}}'
    try:
        request = parse_commit(body.encode())
    except InvalidInputError as exc:
        said(exc)
        return
    strings = [request.title, request.description, request.parent_commit or ""]
    for parsed in request.operations:
        strings.append(parsed.path)
        if isinstance(parsed, PutLfsFile):
            strings.append(parsed.sha256)
    assert all(is_text(s) for s in strings)


# --- YAML cards -----------------------------------------------------------------------------
CARD_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=15,
)
CARD_KEYS = TEXT.filter(
    lambda k: k not in {"tags", "datasets", "language", "base_model", "license"}
)


@FEW
@given(st.dictionaries(CARD_KEYS, CARD_VALUES, max_size=5), st.booleans(), TEXT)
@example({"k": "x\u2028y"}, True, "")  # U+2028 inside a scalar was rewritten as a newline
@example({"k": "x\u2029"}, True, "")
def test_cards_round_trip(metadata: dict[str, Any], unicode: bool, body: str) -> None:
    block = yaml.safe_dump(metadata, allow_unicode=unicode, sort_keys=False)
    # PyYAML's own round trip has gaps (it writes a lone NEL key it cannot read back).
    assume(yaml.safe_load(block) == metadata)
    assert parse_card(f"---\n{block}---\n{body}") == metadata
    assert parse_card(f"---\r\n{block.replace(chr(10), chr(13) + chr(10))}---\r\n") == metadata


def test_cards_keep_unusual_line_breaks_inside_scalars() -> None:
    """Only LF ends a line of the card; FS (never valid YAML) must not turn into one."""
    assert parse_card("---\na: 'x\u2028  y'\n---\n") == {"a": "x\u2028y"}
    with pytest.raises(InvalidInputError):
        parse_card('---\na: "x\x1cy"\n---\n')


YAML_VALUES = st.sampled_from(
    [
        "2024-01-31",  # dates were built as date objects; cardData could not be served (500)
        "2001-12-14t21:59:43.10-05:00",
        "2001-13-45",  # an impossible date was a ValueError
        ".nan",
        "-.inf",
        "1e400",
        "!!binary aGk=",
        "!!binary xyz",
        "!!set {a, b}",
        "!!omap [a: 1, b: 2]",
        "!!pairs [a: 1]",
        "!!timestamp abc",  # AttributeError inside PyYAML
        "!!int abc",  # ValueError
        "!!int ''",  # IndexError
        "!!bool maybe",  # KeyError
        "!!float x",
        "!!str [a]",
        '"\\ud800"',  # a lone surrogate escape
        '"\\x85\\u2028"',
        "0b" + "1" * 20_000,  # fine for int(), too long to print as JSON
        "1" * 5000,  # past int()'s digit limit: ValueError
        "0x" + "f" * 5000,
        "1:2:3",
        "[1, {a: [2, 3]}]",
        "{? [1, 2]: x}",
        "&a 1",
        "*a",
        "!!python/name:os.system",
        "x",
    ]
)


@FUZZ
@given(st.lists(YAML_VALUES, min_size=1, max_size=3), st.sampled_from(["k", "tags", "license"]))
@example(["2024-01-31"], "k")
@example([".nan"], "k")
@example(["!!set {a, b}"], "k")
@example(["!!binary aGk="], "k")
@example(['"\\ud800"'], "k")
@example(["0b" + "1" * 20_000], "k")
@example(["1" * 5000], "k")
@example(["2001-13-45"], "k")
@example(["!!timestamp abc"], "k")
@example(["!!bool maybe"], "k")
@example(["!!int ''"], "k")
def test_accepted_cards_can_be_served_as_json(values: list[str], field: str) -> None:
    lines = [f"{field}: {values[0]}"] + [f"k{i}: {v}" for i, v in enumerate(values[1:])]
    card = "---\n" + "\n".join(lines) + "\n---\n# card\n"
    try:
        data = parse_card(card)
    except InvalidInputError as exc:
        said(exc)
        return
    assert data is not None
    as_strict_json(data)
    as_strict_json({"cardData": data})


@pytest.mark.parametrize(
    "block",
    [
        "a: " + "x" * 1_000_000,  # one huge scalar
        "\n".join(f"k{i}: v" for i in range(20_000)),  # many keys
        "a: " + "[" * 200_000,  # deep flow nesting
        "".join(" " * i + "a:\n" for i in range(1400)),  # deep block nesting, ~1 MiB
        "a: &a [x, x]\n" + "\n".join(f"b{i}: *a" for i in range(20_000)),  # many aliases
        "a: " + "'" + "''" * 200_000 + "'",  # escaped quotes
    ],
    ids=["scalar", "keys", "flow", "block", "aliases", "quotes"],
)
def test_a_large_hostile_card_is_answered_quickly(block: str) -> None:
    """Hundreds of KiB of hostile YAML (cards may reach 1 MiB): an answer, not a hang."""
    started = time.monotonic()
    try:
        parse_card(f"---\n{block}\n---\n")
    except InvalidInputError as exc:
        said(exc)
    assert time.monotonic() - started < 20
