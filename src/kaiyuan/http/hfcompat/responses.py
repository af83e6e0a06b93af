"""Sending content fast: local segments go out zero-copy, anything else in large pieces.

Content is a list of (blob, offset, length) segments (one for a whole blob, a few for a file
stored as Xet chunks). When every segment is a local file and the server offers the
`kaiyuan.segments` extension, the connection sends them with sendfile(2); otherwise the bytes
are read in a worker thread and written in 8 MiB pieces.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from kaiyuan.services.contents import Segment

SEND_CHUNK = 8 * 1024 * 1024  # Starlette's 64 KiB default caps a download at ~0.4 GB/s here
SEGMENTS = "kaiyuan.segments"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class SegmentsResponse(Response):
    """A body made of local file ranges (sent zero-copy when possible) or of a byte stream."""

    def __init__(
        self,
        status_code: int,
        headers: dict[str, str],
        *,
        local: list[tuple[Path, int, int]] | None,
        stream: Callable[[], Iterator[bytes]],
    ) -> None:
        super().__init__(status_code=status_code, headers=headers)
        self._local = local
        self._stream = stream

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        del receive
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if self._local is not None and SEGMENTS in scope.get("extensions", {}):
            await send({"type": SEGMENTS, "segments": self._local})
            return
        async for piece in iterate_in_threadpool(_rechunk(self._stream())):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def init_headers(self, headers: Any = None) -> None:
        # Content-Length comes from the caller; Response would otherwise set it from an empty body.
        super().init_headers(headers)
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"] + [
            (b"content-length", headers["Content-Length"].encode())
        ]


def _rechunk(pieces: Iterator[bytes]) -> Iterator[bytes]:
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        if len(buffer) >= SEND_CHUNK:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


async def send_content(
    request: Request,
    *,
    size: int,
    locate: Callable[[int, int], list[Segment]],
    local: Callable[[list[Segment]], list[tuple[Path, int, int]] | None],
    read: Callable[[list[Segment]], Iterator[bytes]],
    headers: dict[str, str],
) -> Response:
    """The whole content or the requested byte range (206); HEAD without a body."""
    headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
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
        return SegmentsResponse(status, headers, local=[], stream=lambda: iter(()))
    segments = await run_in_threadpool(locate, start, end)
    files = await run_in_threadpool(local, segments)
    if files is not None:
        return SegmentsResponse(status, headers, local=files, stream=lambda: read(segments))
    # Read the first piece before the status goes out: a store that cannot be reached is then
    # a clear 503, not a 200 cut off after its headers.
    pieces = read(segments)
    first = await run_in_threadpool(next, pieces, b"")
    return SegmentsResponse(
        status, headers, local=None, stream=lambda: itertools.chain([first], pieces)
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
