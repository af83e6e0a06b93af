"""The background worker that empties the fingerprint queue inside a hub process.

Every hub process may run one; they share the queue in the database, where claiming a job is a
compare-and-set, so two processes never fingerprint the same revision at once. A push wakes
the worker at once; the poll interval only bounds how late a job queued by another process is
picked up.
"""

from __future__ import annotations

from kaiyuan.services.background import PollingThread
from kaiyuan.services.provenance.service import ProvenanceService


class ProvenanceWorker:
    def __init__(self, service: ProvenanceService, poll_seconds: float) -> None:
        self._service = service
        self._thread = PollingThread("kaiyuan-provenance", service.process_next, poll_seconds)

    def start(self) -> None:
        self._service.on_queued = self._thread.wake
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._thread.stop(timeout)
