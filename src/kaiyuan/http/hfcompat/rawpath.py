"""Splitting the undecoded request path: revisions arrive with `/` encoded as %2F."""

from __future__ import annotations

from urllib.parse import unquote

from fastapi import Request

from kaiyuan.core.errors import InvalidInputError


def segments(request: Request) -> list[str]:
    """The path's segments, split on literal '/' first and percent-decoded one by one."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    text = raw.decode("latin-1")
    try:
        return [unquote(part, errors="strict") for part in text.split("/")[1:]]
    except UnicodeDecodeError as exc:
        raise InvalidInputError("the request path is not valid UTF-8") from exc


def join_path(parts: list[str]) -> str:
    """A file path from the remaining segments (a trailing '/' is dropped)."""
    return "/".join(parts).rstrip("/") if parts else ""
