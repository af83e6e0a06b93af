"""Parsers of outside input: card front matter and NDJSON commit bodies."""

from __future__ import annotations

import base64
import json

import pytest

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.http.hfcompat.ndjson import parse_commit
from kaiyuan.services.cards import parse_card
from kaiyuan.services.commits import DeleteFile, DeleteFolder, PutLfsFile, PutRegularFile


def test_card_front_matter() -> None:
    card = "---\nlicense: apache-2.0\nbase_model: [a/b, c/d]\ntags: [x]\n---\n# Title\n"
    assert parse_card(card) == {
        "license": "apache-2.0",
        "base_model": ["a/b", "c/d"],
        "tags": ["x"],
    }
    assert parse_card("# no metadata\n") is None
    assert parse_card("---\n---\n") == {}


@pytest.mark.parametrize(
    "card",
    [
        "---\nlicense: [unclosed\n---\n",
        "---\n- a list\n---\n",
        "---\nlicense: 3\n---\n",
        "---\nbase_model: {a: 1}\n---\n",
        "---\na: &x [1, 2]\nb: *x\n---\n",  # aliases (alias bombs) are refused
        "---\nlicense: mit\n",  # never closed
        "---\n!!python/object/apply:os.system ['true']\n---\n",
        "---\n? [1, 2]\n: value\n---\n",
    ],
)
def test_bad_cards(card: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_card(card)


def line(key: str, value: object) -> bytes:
    return json.dumps({"key": key, "value": value}).encode()


def test_commit_body() -> None:
    body = b"\n".join(
        [
            line("header", {"summary": "s", "description": "d", "parentCommit": "a" * 40}),
            line(
                "file",
                {
                    "path": "a.txt",
                    "content": base64.b64encode(b"hi").decode(),
                    "encoding": "base64",
                },
            ),
            line("lfsFile", {"path": "w.bin", "algo": "sha256", "oid": "b" * 64, "size": 3}),
            line("deletedFile", {"path": "old.txt"}),
            line("deletedFolder", {"path": "logs/"}),
            b"",
        ]
    )
    request = parse_commit(body)
    assert (request.title, request.description, request.parent_commit) == ("s", "d", "a" * 40)
    assert request.operations == [
        PutRegularFile("a.txt", b"hi"),
        PutLfsFile("w.bin", "b" * 64, 3),
        DeleteFile("old.txt"),
        DeleteFolder("logs/"),
    ]


HEADER = line("header", {"summary": "s"})


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        line("file", {"path": "a", "content": ""}),  # no header first
        HEADER + b"\n" + HEADER,
        HEADER + b"\n" + line("copyFile", {"path": "a"}),
        HEADER + b"\n" + line("file", {"path": "a", "content": "%%%"}),
        HEADER + b"\n" + line("file", {"path": 3, "content": ""}),
        HEADER + b"\n" + line("file", {"path": "a", "content": "", "encoding": "utf-8"}),
        HEADER + b"\n" + line("lfsFile", {"path": "a", "oid": "x", "algo": "md5"}),
        HEADER + b"\n" + line("lfsFile", {"path": "a", "oid": "x", "size": "3"}),
        HEADER + b"\n" + b'{"key": "file", "value": "nope"}',
        HEADER + b"\n\xff\xfe",
        line("header", {"summary": 5}),
    ],
)
def test_bad_commit_bodies(body: bytes) -> None:
    with pytest.raises(InvalidInputError):
        parse_commit(body)
