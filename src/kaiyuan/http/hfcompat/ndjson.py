"""Parsing the NDJSON commit body into a CommitRequest; every line is checked, nothing trusted."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.http.context import DEFAULT_JSON_DEPTH, check_json_depth
from kaiyuan.services.commits import (
    CommitRequest,
    DeleteFile,
    DeleteFolder,
    Operation,
    PutLfsFile,
    PutRegularFile,
)


def parse_commit(body: bytes, max_depth: int = DEFAULT_JSON_DEPTH) -> CommitRequest:
    header: dict[str, Any] | None = None
    operations: list[Operation] = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        key, value = _line(line, number, max_depth)
        if key == "header":
            if header is not None or operations:
                raise InvalidInputError(f"line {number}: the header must come first, once")
            header = value
        elif header is None:
            raise InvalidInputError(f"line {number}: the first line must be the header")
        else:
            operations.append(_operation(key, value, number))
    if header is None:
        raise InvalidInputError("empty commit: no header line")
    summary = _text(header, "summary", 1, required=True) or ""
    description = _text(header, "description", 1) or ""
    parent = _text(header, "parentCommit", 1)
    return CommitRequest(summary, description, operations, parent or None)


def _line(line: bytes, number: int, max_depth: int) -> tuple[str, dict[str, Any]]:
    try:
        item = json.loads(line)
    except (ValueError, RecursionError):  # bad JSON or UTF-8, huge integers, deep nesting
        raise InvalidInputError(f"line {number} is not valid JSON") from None
    try:
        check_json_depth(item, max_depth)
    except InvalidInputError as exc:
        raise InvalidInputError(f"line {number}: {exc.message}") from None
    if not isinstance(item, dict) or not isinstance(item.get("key"), str):
        raise InvalidInputError(f"line {number}: expected an object with a string 'key'")
    value = item.get("value")
    if not isinstance(value, dict):
        raise InvalidInputError(f"line {number}: 'value' must be an object")
    return item["key"], value


def _operation(key: str, value: dict[str, Any], number: int) -> Operation:
    path = _text(value, "path", number, required=True)
    assert path is not None  # noqa: S101 - required
    if key == "file":
        encoding = value.get("encoding", "base64")
        if encoding != "base64":
            raise InvalidInputError(f"line {number}: only base64 file content is supported")
        content = _text(value, "content", number, required=True) or ""
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInputError(f"line {number}: 'content' is not valid base64") from None
        return PutRegularFile(path, data)
    if key == "lfsFile":
        if value.get("algo", "sha256") != "sha256":
            raise InvalidInputError(f"line {number}: LFS objects are named by sha256")
        oid = _text(value, "oid", number, required=True) or ""
        size = value.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise InvalidInputError(f"line {number}: 'size' must be an integer")
        return PutLfsFile(path, oid, size)
    if key == "deletedFile":
        return DeleteFile(path)
    if key == "deletedFolder":
        return DeleteFolder(path)
    raise InvalidInputError(f"line {number}: unknown operation {key!r}")


def _text(value: dict[str, Any], name: str, number: int, *, required: bool = False) -> str | None:
    item = value.get(name)
    if item is None:
        if required:
            raise InvalidInputError(f"line {number}: {name!r} is required")
        return None
    if not isinstance(item, str):
        raise InvalidInputError(f"line {number}: {name!r} must be a string")
    return item
