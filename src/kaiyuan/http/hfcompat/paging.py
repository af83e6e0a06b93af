"""Pagination as the HF clients follow it: an opaque cursor in an absolute `Link` next URL."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.http.context import base_url

MAX_PAGE = 1000


def page_params(request: Request, default_limit: int) -> tuple[int, int]:
    """(offset, limit) from `cursor` and `limit`; garbage is refused, not guessed."""
    cursor = request.query_params.get("cursor", "0")
    limit = request.query_params.get("limit", str(default_limit))
    if not cursor.isdigit() or not limit.isdigit() or int(limit) < 1:
        raise InvalidInputError("cursor and limit must be non-negative integers")
    return int(cursor), min(int(limit), MAX_PAGE)


def next_link(request: Request, cursor: int) -> str:
    """The next page's URL, built from the raw path so an encoded revision stays encoded."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    params.append(("cursor", str(cursor)))
    return f'<{base_url(request)}{raw.decode("latin-1")}?{urlencode(params)}>; rel="next"'
