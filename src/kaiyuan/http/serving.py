"""Running the app under uvicorn, with a zero-copy extension for sending file ranges.

uvicorn sends every body through Python (~1.8 GB/s here, about half of nginx). The
`kaiyuan.segments` extension takes a list of (path, offset, length) ranges of local files after
`http.response.start` and sends them with `loop.sendfile` (zero-copy `sendfile(2)`); Starlette's
`http.response.pathsend` (a whole file) is served the same way.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

PATHSEND = "http.response.pathsend"
SEGMENTS = "kaiyuan.segments"


class _PathsendCycle(RequestResponseCycle):
    async def send(self, message: Any) -> None:
        if message["type"] == PATHSEND:
            ranges = [(message["path"], 0, self.expected_content_length)]
        elif message["type"] == SEGMENTS:
            ranges = message["segments"]
        else:
            await super().send(message)
            return
        if not self.response_started or self.response_complete:
            raise RuntimeError("file ranges must follow http.response.start")
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if not self.disconnected and self.scope["method"] != "HEAD":
            for path, offset, length in ranges:
                if not await self._sendfile(path, offset, length):
                    return
        await super().send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _sendfile(self, path: Any, offset: int, length: int) -> bool:
        # Opening a local file does not block in any way that matters here.
        try:
            with Path(path).open("rb") as handle:  # noqa: ASYNC230
                loop = asyncio.get_running_loop()
                sent = await loop.sendfile(self.transport, handle, offset, length)
        except ConnectionError:
            # The client went away mid-file: nothing more can be sent on this connection.
            self.disconnected = True
            self.transport.close()
            return False
        self.expected_content_length -= sent
        return True


class PathsendProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, announcing and serving `http.response.pathsend`."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {PATHSEND: {}, SEGMENTS: {}}

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if type(self.cycle) is RequestResponseCycle:
            # Same object, one overridden method: the cycle's state stays uvicorn's own.
            self.cycle.__class__ = _PathsendCycle


def run(app: Any, *, host: str, port: int, log_level: str, forwarded_allow_ips: str) -> None:
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=PathsendProtocol,
        loop="asyncio",  # uvloop has no loop.sendfile; the selector loop sends zero-copy
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        timeout_keep_alive=30,
    )
