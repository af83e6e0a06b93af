"""Sending file bytes fast: large chunks from a local file, or a ranged stream from any store."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

from fastapi import Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import MalformedRangeHeader

SEND_CHUNK = 8 * 1024 * 1024  # Starlette's 64 KiB default caps a download at ~0.4 GB/s here
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class LargeChunkFileResponse(FileResponse):
    chunk_size = SEND_CHUNK

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        # RFC 9110: a Range header that cannot be parsed is ignored (full 200), not a 400.
        try:
            return super()._parse_range_header(http_range, file_size)
        except (MalformedRangeHeader, ValueError):
            return []


def send_file(
    request: Request,
    *,
    path: Path | None,
    size: int,
    reader: Callable[[int, int], Iterator[bytes]],
    headers: dict[str, str],
) -> Response:
    """The whole file or the requested byte range (206), HEAD without a body."""
    headers = {**headers, "Accept-Ranges": "bytes"}
    if path is not None:
        return LargeChunkFileResponse(path, headers=headers, media_type="application/octet-stream")
    span = _single_range(request.headers.get("range"), size)
    if isinstance(span, Unsatisfiable):
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = (0, size) if span is None else span
    headers["Content-Length"] = str(end - start)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    return StreamingResponse(
        iterate_in_threadpool(reader(start, end)),
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )


class Unsatisfiable:
    """A range that lies outside the file (answered with 416)."""


def _single_range(header: str | None, size: int) -> tuple[int, int] | Unsatisfiable | None:  # noqa: PLR0911
    """[start, end) of a single `bytes=` range; None to send everything (incl. multi-range)."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # multi-range or unknown unit: RFC 9110 allows ignoring it
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        length = int(last)
        if length == 0:
            return Unsatisfiable()
        return max(0, size - length), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or end <= start:
        return Unsatisfiable()
    return start, end
