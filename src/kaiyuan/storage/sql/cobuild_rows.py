"""SQL rows for co-built datasets (policies, contributions) and the background job queue."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, or_, select, update

from kaiyuan.core.cobuilding import CoBuildPolicy, ContributedFile, Contribution, ContributionStatus
from kaiyuan.core.jobs import Job, JobKind, JobStatus
from kaiyuan.core.models import Repo
from kaiyuan.storage.sql import tables as t
from kaiyuan.storage.sql.dialects import as_utc

_MAX_LOG = 64 * 1024


class CoBuildRows:
    """Mixed into the SQL session; `_c` comes from it."""

    _c: Connection
    _repo_by_pk: Callable[[int], Repo | None]

    def repo_by_pk(self, pk: int) -> Repo | None:
        return self._repo_by_pk(pk)

    # --- policies ---------------------------------------------------------------------------
    def cobuild_policy(self, repo: Repo) -> CoBuildPolicy | None:
        table = t.cobuild_policies
        row = self._c.execute(select(table).where(table.c.repo_pk == repo.pk)).first()
        if row is None:
            return None
        return CoBuildPolicy(
            tuple(json.loads(row.organisations)),
            tuple(json.loads(row.licences)),
            row.updated_by,
            as_utc(row.updated_at),
        )

    def set_cobuild_policy(self, repo: Repo, policy: CoBuildPolicy, now: datetime) -> None:
        table = t.cobuild_policies
        self._c.execute(delete(table).where(table.c.repo_pk == repo.pk))
        self._c.execute(
            insert(table).values(
                repo_pk=repo.pk,
                organisations=json.dumps(list(policy.organisations)),
                licences=json.dumps(list(policy.licences)),
                updated_by=policy.updated_by,
                updated_at=now,
            )
        )

    # --- contributions ----------------------------------------------------------------------
    def next_contribution_number(self, repo: Repo) -> int:
        table = t.contributions
        top = self._c.execute(
            select(func.max(table.c.number)).where(table.c.repo_pk == repo.pk)
        ).scalar()
        return int(top or 0) + 1

    def add_contribution(self, repo: Repo, contribution: Contribution) -> None:
        self._c.execute(
            insert(t.contributions).values(
                repo_pk=repo.pk,
                number=contribution.number,
                organisation=contribution.organisation,
                contributor=contribution.contributor,
                licence=contribution.licence,
                title=contribution.title,
                status=contribution.status.value,
                branch=contribution.branch,
                commit=contribution.commit,
                files=json.dumps([asdict(f) for f in contribution.files]),
                created_at=contribution.created_at,
                reviewed_by="",
                review_note="",
                merged_commit="",
            )
        )

    def contribution(self, repo: Repo, number: int) -> Contribution | None:
        table = t.contributions
        row = self._c.execute(
            select(table).where(table.c.repo_pk == repo.pk, table.c.number == number)
        ).first()
        return _contribution(row) if row else None

    def contributions(
        self, repo: Repo, status: ContributionStatus | None = None
    ) -> list[Contribution]:
        table = t.contributions
        query = select(table).where(table.c.repo_pk == repo.pk)
        if status is not None:
            query = query.where(table.c.status == status.value)
        return [_contribution(r) for r in self._c.execute(query.order_by(table.c.number))]

    def review_contribution(
        self,
        repo: Repo,
        number: int,
        status: ContributionStatus,
        by: str,
        now: datetime,
        note: str,
        merged_commit: str = "",
    ) -> bool:
        """Record a review of a pending contribution; False when it was no longer pending."""
        table = t.contributions
        done = self._c.execute(
            update(table)
            .where(
                table.c.repo_pk == repo.pk,
                table.c.number == number,
                table.c.status == ContributionStatus.PENDING.value,
            )
            .values(
                status=status.value,
                reviewed_by=by,
                reviewed_at=now,
                review_note=note,
                merged_commit=merged_commit,
            )
        )
        return bool(done.rowcount)

    # --- jobs -------------------------------------------------------------------------------
    def add_job(self, job: Job) -> None:
        self._c.execute(
            insert(t.jobs).values(
                id=job.id,
                kind=job.kind.value,
                repo_pk=job.repo_pk,
                revision=job.revision,
                params=json.dumps(job.params, sort_keys=True),
                status=job.status.value,
                progress=0.0,
                stage="",
                created_by=job.created_by,
                created_at=job.created_at,
                attempts=0,
                cancel_requested=False,
                result="{}",
                error="",
                log="",
            )
        )

    def job(self, job_id: str) -> Job | None:
        row = self._c.execute(select(t.jobs).where(t.jobs.c.id == job_id)).first()
        return _job(row) if row else None

    def jobs(self, repo: Repo | None, kind: JobKind | None, limit: int) -> list[Job]:
        table = t.jobs
        query = select(table)
        if repo is not None:
            query = query.where(table.c.repo_pk == repo.pk)
        if kind is not None:
            query = query.where(table.c.kind == kind.value)
        query = query.order_by(table.c.created_at.desc(), table.c.id).limit(limit)
        return [_job(r) for r in self._c.execute(query)]

    def claim_job(
        self, kinds: set[JobKind], now: datetime, stale_before: datetime, max_attempts: int
    ) -> Job | None:
        """Take the oldest queued job (or one whose worker stopped beating) with a CAS."""
        table = t.jobs
        waiting = or_(
            table.c.status == JobStatus.QUEUED.value,
            (table.c.status == JobStatus.RUNNING.value) & (table.c.heartbeat_at < stale_before),
        )
        rows = self._c.execute(
            select(table.c.id, table.c.status, table.c.heartbeat_at, table.c.attempts)
            .where(waiting, table.c.kind.in_([k.value for k in kinds]))
            .order_by(table.c.created_at, table.c.id)
            .limit(8)
        ).all()
        for row in rows:
            if row.attempts >= max_attempts:
                self._c.execute(
                    update(table)
                    .where(table.c.id == row.id, table.c.status == row.status)
                    .values(
                        status=JobStatus.FAILED.value,
                        finished_at=now,
                        error=f"given up after {row.attempts} attempts (its worker stopped)",
                    )
                )
                continue
            claimed = self._c.execute(
                update(table)
                .where(
                    table.c.id == row.id,
                    table.c.status == row.status,
                    table.c.attempts == row.attempts,
                )
                .values(
                    status=JobStatus.RUNNING.value,
                    started_at=now,
                    heartbeat_at=now,
                    attempts=row.attempts + 1,
                )
            )
            if claimed.rowcount:
                return self.job(row.id)
        return None

    def beat_job(
        self, job_id: str, attempt: int, now: datetime, progress: float, stage: str
    ) -> bool | None:
        """Record progress; whether a cancel was requested (None: this attempt lost the job)."""
        table = t.jobs
        beat = self._c.execute(
            update(table)
            .where(
                table.c.id == job_id,
                table.c.status == JobStatus.RUNNING.value,
                table.c.attempts == attempt,
            )
            .values(heartbeat_at=now, progress=progress, stage=stage[:200])
        )
        if not beat.rowcount:
            return None
        flag = self._c.execute(
            select(table.c.cancel_requested).where(table.c.id == job_id)
        ).scalar()
        return bool(flag)

    def cancel_job(self, job_id: str, now: datetime) -> JobStatus | None:
        """Cancel a queued job at once, flag a running one; the status it is left in."""
        table = t.jobs
        self._c.execute(
            update(table)
            .where(table.c.id == job_id, table.c.status == JobStatus.QUEUED.value)
            .values(status=JobStatus.CANCELLED.value, finished_at=now, cancel_requested=True)
        )
        self._c.execute(
            update(table)
            .where(table.c.id == job_id, table.c.status == JobStatus.RUNNING.value)
            .values(cancel_requested=True)
        )
        status = self._c.execute(select(table.c.status).where(table.c.id == job_id)).scalar()
        return JobStatus(status) if status is not None else None

    def finish_job(
        self,
        job_id: str,
        attempt: int,
        status: JobStatus,
        now: datetime,
        result: dict[str, Any],
        error: str,
        log: str,
    ) -> None:
        table = t.jobs
        self._c.execute(
            update(table)
            .where(
                table.c.id == job_id,
                table.c.status == JobStatus.RUNNING.value,
                table.c.attempts == attempt,
            )
            .values(
                status=status.value,
                finished_at=now,
                progress=1.0 if status is JobStatus.SUCCEEDED else table.c.progress,
                result=json.dumps(result, sort_keys=True),
                error=error[:_MAX_LOG],
                log=log[-_MAX_LOG:],
            )
        )


def _contribution(row: Row[Any]) -> Contribution:
    return Contribution(
        number=row.number,
        organisation=row.organisation,
        contributor=row.contributor,
        licence=row.licence,
        title=row.title,
        status=ContributionStatus(row.status),
        branch=row.branch,
        commit=row.commit,
        files=tuple(ContributedFile(**f) for f in json.loads(row.files)),
        created_at=as_utc(row.created_at),
        reviewed_by=row.reviewed_by,
        reviewed_at=as_utc(row.reviewed_at) if row.reviewed_at else None,
        review_note=row.review_note,
        merged_commit=row.merged_commit,
    )


def _job(row: Row[Any]) -> Job:
    return Job(
        id=row.id,
        kind=JobKind(row.kind),
        repo_pk=row.repo_pk,
        revision=row.revision,
        params=json.loads(row.params),
        status=JobStatus(row.status),
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        progress=float(row.progress),
        stage=row.stage,
        started_at=as_utc(row.started_at) if row.started_at else None,
        finished_at=as_utc(row.finished_at) if row.finished_at else None,
        heartbeat_at=as_utc(row.heartbeat_at) if row.heartbeat_at else None,
        attempts=row.attempts,
        cancel_requested=bool(row.cancel_requested),
        result=json.loads(row.result),
        error=row.error,
        log=row.log,
    )
