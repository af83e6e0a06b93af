"""Background jobs the hub runs for users (dataset curation; evaluation will share the queue).

A job is a row: queued, claimed by one worker with a compare-and-set, heart-beaten while it
runs, and finished with a result or an error and the log it kept. A job whose worker stopped
beating (the process died) is taken again by the next worker; a cancel request is a flag the
running job reads between units of work.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class JobStatus(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}


class JobKind(enum.Enum):
    CURATION = "curation"


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of background work on a repository revision."""

    id: str
    kind: JobKind
    repo_pk: int
    revision: str  # the commit sha the job reads, resolved when it was queued
    params: dict[str, Any]
    status: JobStatus
    created_by: str
    created_at: datetime
    progress: float = 0.0
    stage: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    attempts: int = 0
    cancel_requested: bool = False
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    log: str = ""


class JobCancelledError(Exception):
    """Raised inside a running job when its cancel flag is seen; the runner marks it cancelled."""
