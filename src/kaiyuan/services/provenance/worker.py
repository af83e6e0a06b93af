"""The background worker that empties the fingerprint queue inside a hub process.

Every hub process may run one; they share the queue in the database, where claiming a job is a
compare-and-set, so two processes never fingerprint the same revision at once. A push wakes
the worker at once; the poll interval only bounds how late a job queued by another process is
picked up.
"""

from __future__ import annotations

import logging
import threading

from kaiyuan.services.provenance.service import ProvenanceService

log = logging.getLogger("kaiyuan.provenance")


class ProvenanceWorker:
    def __init__(self, service: ProvenanceService, poll_seconds: float) -> None:
        self._service = service
        self._poll = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._service.on_queued = self._wake.set
        self._thread = threading.Thread(target=self._run, name="kaiyuan-provenance", daemon=True)
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
                busy = self._service.process_next()
            except Exception:  # the database may be briefly unavailable; try again later
                log.exception("provenance worker: could not take a job")
                busy = False
            if not busy:
                self._wake.wait(self._poll)
                self._wake.clear()
