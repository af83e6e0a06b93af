"""A daemon thread that does one unit of work at a time, waking early when told to.

Used by the workers every hub process runs (fingerprints, jobs): they share queues in the
database, so a wake-up only shortens the wait; the poll interval bounds how late work queued by
another process is picked up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("kaiyuan.background")


class PollingThread:
    def __init__(self, name: str, step: Callable[[], bool], poll_seconds: float) -> None:
        """`step` does one unit of work and says whether there was one."""
        self._name = name
        self._step = step
        self._poll = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self._step()
            except Exception:  # the database may be briefly unavailable; try again later
                log.exception("%s: could not take work", self._name)
                busy = False
            if not busy:
                self._wake.wait(self._poll)
                self._wake.clear()
