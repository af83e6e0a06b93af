"""Running the app under uvicorn, with the ASGI `http.response.pathsend` extension added.

uvicorn does not offer `pathsend`, so every file download would be copied through Python in
chunks (~1.8 GB/s here, about half of nginx). With the extension, Starlette's FileResponse hands
over the path of a whole-file GET and we send it with `loop.sendfile` (zero-copy `sendfile(2)`).
Range requests and HEAD keep the normal path.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

PATHSEND = "http.response.pathsend"


class _PathsendCycle(RequestResponseCycle):
    async def send(self, message: Any) -> None:
        if message["type"] != PATHSEND:
            await super().send(message)
            return
        if not self.response_started or self.response_complete:
            raise RuntimeError("pathsend must follow http.response.start")
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if not self.disconnected and self.scope["method"] != "HEAD":
            length = self.expected_content_length
            # Opening a local file does not block in any way that matters here.
            try:
                with Path(message["path"]).open("rb") as handle:  # noqa: ASYNC230
                    loop = asyncio.get_running_loop()
                    sent = await loop.sendfile(self.transport, handle, 0, length)
            except ConnectionError:
                # The client went away mid-file: nothing more can be sent on this connection.
                self.disconnected = True
                self.transport.close()
                return
            self.expected_content_length -= sent
        await super().send({"type": "http.response.body", "body": b"", "more_body": False})


class PathsendProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, announcing and serving `http.response.pathsend`."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {PATHSEND: {}}

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if type(self.cycle) is RequestResponseCycle:
            # Same object, one overridden method: the cycle's state stays uvicorn's own.
            self.cycle.__class__ = _PathsendCycle


def run(app: Any, *, host: str, port: int, log_level: str) -> None:
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=PathsendProtocol,
        loop="asyncio",  # uvloop has no loop.sendfile; the selector loop sends zero-copy
        proxy_headers=True,
        timeout_keep_alive=30,
    )
