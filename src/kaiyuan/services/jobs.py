"""The background job queue and the worker that runs jobs inside a hub process.

Jobs live in the database, so they survive restarts and several hub processes share them:
claiming is a compare-and-set, a running job beats a heartbeat, and a job whose heartbeat
stopped (its process died) is taken again. A cancel request is a flag the job sees the next
time it reports progress; a failed job keeps its error and its log.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from kaiyuan.core.errors import HubError, InvalidInputError, NotFoundError
from kaiyuan.core.jobs import Job, JobCancelledError, JobKind, JobStatus
from kaiyuan.core.models import Repo
from kaiyuan.core.ports import MetadataStore
from kaiyuan.services.background import PollingThread
from kaiyuan.services.clock import Clock, utc_now

log = logging.getLogger("kaiyuan.jobs")

MAX_ATTEMPTS = 3
_JOB_ID_BYTES = 12
_MAX_ID = 32


class JobLostError(Exception):
    """The running attempt no longer holds the job: it was given to another worker."""


class JobContext:
    """What a running job reports through: progress (which also checks for a cancel) and log."""

    def __init__(self, store: MetadataStore, job: Job, clock: Clock) -> None:
        self._store = store
        self.job = job
        self._clock = clock
        self._lines: list[str] = []

    def progress(self, fraction: float, stage: str) -> None:
        """Record progress; raises JobCancelledError when a cancel was requested."""
        with self._store.session(write=True) as session:
            cancel = session.beat_job(
                self.job.id, self.job.attempts, self._clock(), min(max(fraction, 0.0), 1.0), stage
            )
        if cancel is None:
            raise JobLostError(self.job.id)
        if cancel:
            raise JobCancelledError(self.job.id)

    def log(self, line: str) -> None:
        stamp = self._clock().strftime("%H:%M:%S")
        self._lines.append(f"{stamp} {line}")

    @property
    def text(self) -> str:
        return "\n".join(self._lines)


JobHandler = Callable[[Job, Repo, JobContext], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class JobTimings:
    poll_seconds: float = 2.0
    stale_seconds: float = 120.0  # a heartbeat older than this: the worker is gone


class JobService:
    """Queue, inspect and cancel jobs; the worker below runs them."""

    def __init__(self, store: MetadataStore, clock: Clock = utc_now) -> None:
        self._store = store
        self._clock = clock
        self.on_queued: Callable[[], None] = lambda: None

    def queue(
        self, kind: JobKind, repo: Repo, revision: str, params: dict[str, Any], by: str
    ) -> Job:
        job = Job(
            id=secrets.token_hex(_JOB_ID_BYTES),
            kind=kind,
            repo_pk=repo.pk,
            revision=revision,
            params=params,
            status=JobStatus.QUEUED,
            created_by=by,
            created_at=self._clock(),
        )
        with self._store.session(write=True) as session:
            session.add_job(job)
        self.on_queued()
        return job

    def get(self, job_id: str) -> Job:
        if not isinstance(job_id, str) or not job_id.isalnum() or len(job_id) > _MAX_ID:
            raise InvalidInputError("a job id is up to 32 letters and digits")
        with self._store.session() as session:
            job = session.job(job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} not found")
        return job

    def of_repo(self, repo: Repo, kind: JobKind | None, limit: int = 50) -> list[Job]:
        with self._store.session() as session:
            return session.jobs(repo, kind, limit)

    def cancel(self, job_id: str) -> JobStatus:
        self.get(job_id)
        with self._store.session(write=True) as session:
            status = session.cancel_job(job_id, self._clock())
        if status is None:
            raise NotFoundError(f"job {job_id} not found")
        return status


class JobWorker:
    """Takes jobs from the shared queue, one at a time, on a daemon thread."""

    def __init__(
        self,
        store: MetadataStore,
        service: JobService,
        handlers: Mapping[JobKind, JobHandler],
        timings: JobTimings,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._service = service
        self._handlers = handlers
        self._timings = timings
        self._clock = clock
        self._thread = PollingThread("kaiyuan-jobs", self.run_next, timings.poll_seconds)

    def start(self) -> None:
        if not self._handlers:
            return
        self._service.on_queued = self._thread.wake
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._thread.stop(timeout)

    def run_next(self) -> bool:
        """Claim and run one job; whether there was one."""
        now = self._clock()
        stale = now - timedelta(seconds=self._timings.stale_seconds)
        with self._store.session(write=True) as session:
            job = session.claim_job(set(self._handlers), now, stale, MAX_ATTEMPTS)
            repo = session.repo_by_pk(job.repo_pk) if job is not None else None
        if job is None:
            return False
        context = JobContext(self._store, job, self._clock)
        status, result, error = JobStatus.SUCCEEDED, {}, ""
        beating = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, beating), daemon=True)
        beat.start()
        try:
            result = self._handle(job, repo, context)
        except JobLostError:
            # Another worker took the job over (this one looked dead): leave it to that one.
            log.warning("job %s: taken over by another worker; this attempt stops", job.id)
            return True
        except JobCancelledError:
            status = JobStatus.CANCELLED
            context.log("cancelled")
        except HubError as exc:
            status, error = JobStatus.FAILED, exc.message
            context.log(f"failed: {exc.message}")
        except Exception as exc:
            status, error = JobStatus.FAILED, f"{type(exc).__name__}: {exc}"
            context.log(f"failed: {type(exc).__name__} (details in the hub's log)")
            log.exception("job %s failed", job.id)
        finally:
            beating.set()
            beat.join()
        with self._store.session(write=True) as session:
            session.finish_job(
                job.id, job.attempts, status, self._clock(), result, error, context.text
            )
        return True

    def _handle(self, job: Job, repo: Repo | None, context: JobContext) -> dict[str, Any]:
        if repo is None:
            raise NotFoundError("the job's repository was deleted")
        context.log(f"started {job.kind.value} job on {job.revision}")
        result = self._handlers[job.kind](job, repo, context)
        context.log("finished")
        return result

    def _beat(self, job: Job, done: threading.Event) -> None:
        # Long stages report progress rarely; the heartbeat says the process is alive.
        interval = max(self._timings.stale_seconds / 4, 0.05)
        while not done.wait(interval):
            try:
                with self._store.session(write=True) as session:
                    current = session.job(job.id)
                    if current is not None:
                        session.beat_job(
                            job.id, job.attempts, self._clock(), current.progress, current.stage
                        )
            except Exception:  # noqa: BLE001 - a missed beat is retried on the next tick
                log.warning("job %s: heartbeat failed", job.id)
