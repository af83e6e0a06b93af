"""SQL rows for provenance: the fingerprint queue and results, tensor digests, matches."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, insert, or_, select, update

from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import Repo
from kaiyuan.core.provenance import (
    Fingerprint,
    FingerprintStatus,
    ProvenanceMatch,
    TensorDigest,
)
from kaiyuan.storage.sql import tables as t
from kaiyuan.storage.sql.dialects import as_utc


class ProvenanceRows:
    """Mixed into the SQL session; `_c`, `_engine` and `_repo_by_pk` come from it."""

    _c: Connection
    _engine: Engine
    _repo_by_pk: Callable[[int], Repo | None]

    def queue_fingerprint(self, repo: Repo, commit: str, now: datetime) -> bool:
        """Queue a revision for fingerprinting; False when it already has a fingerprint row."""
        table = t.fingerprints
        exists = self._c.execute(
            select(table.c.pk).where(table.c.repo_pk == repo.pk, table.c.commit == commit)
        ).first()
        if exists is not None:
            return False
        self._c.execute(
            insert(table).values(
                repo_pk=repo.pk,
                commit=commit,
                status=FingerprintStatus.PENDING.value,
                method="",
                summary="{}",
                attempts=0,
                queued_at=now,
            )
        )
        return True

    def fingerprint_waiting(self, stale_before: datetime, max_attempts: int) -> bool:
        """Whether any revision waits to be fingerprinted (a read: idle workers take no lock)."""
        table = t.fingerprints
        return (
            self._c.execute(
                select(table.c.pk)
                .where(_waiting(stale_before), table.c.attempts < max_attempts)
                .limit(1)
            ).first()
            is not None
        )

    def claim_fingerprint(
        self, now: datetime, stale_before: datetime, max_attempts: int
    ) -> tuple[Repo, str] | None:
        """Take the oldest waiting revision (or one whose worker died) and mark it running.

        The update only succeeds if nobody else claimed the row in between, so several hub
        processes can share one queue.
        """
        table = t.fingerprints
        waiting = _waiting(stale_before)
        rows = self._c.execute(
            select(
                table.c.pk,
                table.c.repo_pk,
                table.c.commit,
                table.c.status,
                table.c.started_at,
                table.c.attempts,
            )
            .where(waiting, table.c.attempts < max_attempts)
            .order_by(table.c.queued_at, table.c.pk)
            .limit(8)
        ).all()
        for row in rows:
            claimed = self._c.execute(
                update(table)
                .where(
                    table.c.pk == row.pk,
                    table.c.status == row.status,
                    table.c.attempts == row.attempts,
                )
                .values(
                    status=FingerprintStatus.RUNNING.value,
                    started_at=now,
                    attempts=row.attempts + 1,
                )
            )
            if claimed.rowcount == 1:
                repo = self._repo_by_pk(row.repo_pk)
                if repo is not None:
                    return repo, row.commit
        return None

    def finish_fingerprint(
        self,
        repo: Repo,
        commit: str,
        status: FingerprintStatus,
        now: datetime,
        *,
        method: str = "",
        summary: dict[str, object] | None = None,
        error: str | None = None,
        sketch: bytes | None = None,
        tensors: tuple[TensorDigest, ...] = (),
    ) -> None:
        """Record the outcome for a revision (replacing digests and matches of an earlier try)."""
        table = t.fingerprints
        pk = self._fingerprint_pk(repo, commit)
        if pk is None:
            return
        self._c.execute(delete(t.tensor_digests).where(t.tensor_digests.c.fingerprint_pk == pk))
        self._c.execute(
            delete(t.provenance_matches).where(t.provenance_matches.c.fingerprint_pk == pk)
        )
        self._c.execute(
            update(table)
            .where(table.c.pk == pk)
            .values(
                status=status.value,
                method=method,
                summary=json.dumps(summary or {}, sort_keys=True),
                error=error,
                sketch=sketch,
                finished_at=None if status is FingerprintStatus.RUNNING else now,
            )
        )
        if tensors:
            self._c.execute(
                insert(t.tensor_digests),
                [
                    {
                        "fingerprint_pk": pk,
                        "path": d.path,
                        "name": d.name,
                        "dtype": d.dtype,
                        "shape": json.dumps(list(d.shape)),
                        "digest": d.digest,
                    }
                    for d in tensors
                ],
            )

    def mark_fingerprint(
        self, repo: Repo, commit: str, status: FingerprintStatus, now: datetime
    ) -> None:
        """Set the state of a fingerprint whose results are stored (the scan is over)."""
        self._c.execute(
            update(t.fingerprints)
            .where(t.fingerprints.c.repo_pk == repo.pk, t.fingerprints.c.commit == commit)
            .values(status=status.value, finished_at=now)
        )

    def requeue_fingerprint(self, repo: Repo, commit: str, now: datetime) -> None:
        """Fingerprint a revision again (a new method, or after the failure was fixed)."""
        self._c.execute(
            update(t.fingerprints)
            .where(t.fingerprints.c.repo_pk == repo.pk, t.fingerprints.c.commit == commit)
            .values(status=FingerprintStatus.PENDING.value, attempts=0, queued_at=now)
        )

    def fingerprint(self, repo: Repo, commit: str) -> Fingerprint | None:
        table = t.fingerprints
        row = self._c.execute(
            select(table).where(table.c.repo_pk == repo.pk, table.c.commit == commit)
        ).first()
        return _fingerprint(row, repo) if row is not None else None

    def fingerprint_sketch(self, repo: Repo, commit: str) -> bytes | None:
        table = t.fingerprints
        return self._c.execute(
            select(table.c.sketch).where(table.c.repo_pk == repo.pk, table.c.commit == commit)
        ).scalar()

    def tensor_digests(self, repo: Repo, commit: str) -> list[TensorDigest]:
        pk = self._fingerprint_pk(repo, commit)
        table = t.tensor_digests
        rows = self._c.execute(
            select(table).where(table.c.fingerprint_pk == pk).order_by(table.c.pk)
        )
        return [
            TensorDigest(r.path, r.name, r.dtype, tuple(json.loads(r.shape)), r.digest)
            for r in rows
        ]

    def fingerprinted_models(self) -> list[tuple[Repo, Fingerprint]]:
        """The newest finished fingerprint of every model repository."""
        table = t.fingerprints
        rows = self._c.execute(
            select(table)
            .where(table.c.status == FingerprintStatus.DONE.value)
            .order_by(table.c.finished_at, table.c.pk)
        ).all()
        newest: dict[int, Any] = {row.repo_pk: row for row in rows}
        result = []
        for repo_pk, row in newest.items():
            repo = self._repo_by_pk(repo_pk)
            if repo is not None and repo.kind is RepoKind.MODEL:
                result.append((repo, _fingerprint(row, repo)))
        return result

    def shared_digests(self, repo: Repo, commit: str) -> dict[tuple[int, str], int]:
        """(repository pk, commit) → how many of this revision's tensors it holds byte-exact."""
        pk = self._fingerprint_pk(repo, commit)
        if pk is None:
            return {}
        mine = t.tensor_digests.alias("mine")
        theirs = t.tensor_digests.alias("theirs")
        rows = self._c.execute(
            select(
                t.fingerprints.c.repo_pk,
                t.fingerprints.c.commit,
                func.count(func.distinct(mine.c.digest)),
            )
            .select_from(
                mine.join(theirs, theirs.c.digest == mine.c.digest).join(
                    t.fingerprints, t.fingerprints.c.pk == theirs.c.fingerprint_pk
                )
            )
            .where(mine.c.fingerprint_pk == pk, theirs.c.fingerprint_pk != pk)
            .group_by(t.fingerprints.c.repo_pk, t.fingerprints.c.commit)
        )
        return {(row[0], row[1]): int(row[2]) for row in rows}

    def save_provenance_matches(
        self, repo: Repo, commit: str, matches: list[tuple[Repo, ProvenanceMatch]]
    ) -> None:
        pk = self._fingerprint_pk(repo, commit)
        if pk is None:
            return
        table = t.provenance_matches
        self._c.execute(delete(table).where(table.c.fingerprint_pk == pk))
        for candidate, match in matches:
            self._c.execute(
                insert(table).values(
                    fingerprint_pk=pk,
                    candidate_repo_pk=candidate.pk,
                    candidate_commit=match.candidate_commit,
                    score=match.score,
                    null_level=match.null_level,
                    threshold=match.threshold,
                    relation=match.relation,
                    shortlist_score=match.shortlist_score,
                    shared_tensors=match.shared_tensors,
                    evidence=json.dumps(match.evidence, sort_keys=True),
                    created_at=match.created_at,
                )
            )

    def provenance_matches(self, repo: Repo, commit: str) -> list[ProvenanceMatch]:
        pk = self._fingerprint_pk(repo, commit)
        table = t.provenance_matches
        rows = self._c.execute(
            select(table, t.repos.c.namespace, t.repos.c.name)
            .join(t.repos, t.repos.c.pk == table.c.candidate_repo_pk)
            .where(table.c.fingerprint_pk == pk)
            .order_by(table.c.score.desc(), table.c.pk)
        )
        return [
            ProvenanceMatch(
                candidate=RepoId(r.namespace, r.name),
                candidate_commit=r.candidate_commit,
                score=r.score,
                null_level=r.null_level,
                threshold=r.threshold,
                relation=r.relation,
                shortlist_score=r.shortlist_score,
                shared_tensors=r.shared_tensors,
                evidence=json.loads(r.evidence),
                created_at=as_utc(r.created_at),
            )
            for r in rows
        ]

    def _fingerprint_pk(self, repo: Repo, commit: str) -> int | None:
        table = t.fingerprints
        return self._c.execute(
            select(table.c.pk).where(table.c.repo_pk == repo.pk, table.c.commit == commit)
        ).scalar()


def _waiting(stale_before: datetime) -> Any:
    """Queued, or claimed by a worker that has not finished since `stale_before` (it died)."""
    table = t.fingerprints
    return or_(
        table.c.status == FingerprintStatus.PENDING.value,
        and_(
            table.c.status == FingerprintStatus.RUNNING.value,
            table.c.started_at < stale_before,
        ),
    )


def _fingerprint(row: Any, repo: Repo) -> Fingerprint:
    summary = json.loads(row.summary)
    return Fingerprint(
        kind=repo.kind,
        repo_id=repo.repo_id,
        commit=row.commit,
        status=FingerprintStatus(row.status),
        queued_at=as_utc(row.queued_at),
        method=row.method,
        summary=summary if isinstance(summary, dict) else {},
        error=row.error,
        finished_at=as_utc(row.finished_at) if row.finished_at is not None else None,
    )
