"""A TCP proxy on 127.0.0.1 that cuts the first large response short, to test download resume."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self


class CuttingProxy:
    """Forwards to `target_port`; the first response longer than `cut_after` bytes is cut there.

    Each client connection gets its own upstream connection. After one cut, everything passes.
    """

    def __init__(self, target_port: int, cut_after: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._cut_after = cut_after
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.cuts = 0
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._target)
        threading.Thread(target=self._pump_requests, args=(client, upstream), daemon=True).start()
        sent = 0
        try:
            while chunk := upstream.recv(1 << 16):
                with self._lock:
                    cut_now = self.cuts == 0 and sent + len(chunk) > self._cut_after
                    if cut_now:
                        self.cuts += 1
                if cut_now:
                    client.sendall(chunk[: max(0, self._cut_after - sent)])
                    break
                client.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _pump_requests(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while chunk := client.recv(1 << 16):
                with self._lock:
                    self.requests.append(chunk)
                upstream.sendall(chunk)
        except OSError:
            pass
