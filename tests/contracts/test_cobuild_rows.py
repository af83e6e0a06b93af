"""Co-building and job rows on SQLite and PostgreSQL, and the job worker over them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kaiyuan.core.cobuilding import (
    CoBuildPolicy,
    ContributedFile,
    Contribution,
    ContributionStatus,
)
from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.jobs import Job, JobKind, JobStatus
from kaiyuan.core.models import Repo
from kaiyuan.services.jobs import JobContext, JobService, JobTimings, JobWorker
from kaiyuan.storage.sql.store import SqlMetadataStore

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _repo(store: SqlMetadataStore) -> Repo:
    with store.session(write=True) as s:
        return s.add_repo(RepoKind.DATASET, RepoId("consortium", "corpus"), False, NOW)


def test_policy_and_contributions_round_trip(store: SqlMetadataStore) -> None:
    repo = _repo(store)
    with store.session(write=True) as s:
        assert s.cobuild_policy(repo) is None
        s.set_cobuild_policy(repo, CoBuildPolicy(("acme", "beta"), ("cc-by-4.0",), "alice"), NOW)
        s.set_cobuild_policy(repo, CoBuildPolicy(("gamma",), (), "bob"), NOW)
        assert s.cobuild_policy(repo) == CoBuildPolicy(("gamma",), (), "bob", NOW)
        assert s.next_contribution_number(repo) == 1
        made = Contribution(
            1,
            "gamma",
            "dave",
            "cc-by-4.0",
            "新闻语料",
            ContributionStatus.PENDING,
            "contrib/1",
            "a" * 40,
            (ContributedFile("contributions/gamma/1/x.jsonl", "b" * 64, 10, 3),),
            NOW,
        )
        s.add_contribution(repo, made)
        assert s.next_contribution_number(repo) == 2
        assert s.contribution(repo, 1) == made
        assert s.contributions(repo, ContributionStatus.ACCEPTED) == []
        assert s.review_contribution(
            repo, 1, ContributionStatus.ACCEPTED, "alice", NOW, "ok", "c" * 40
        )
        assert not s.review_contribution(repo, 1, ContributionStatus.REJECTED, "bob", NOW, "")
        found = s.contribution(repo, 1)
        assert found is not None
        assert (found.status, found.reviewed_by, found.merged_commit) == (
            ContributionStatus.ACCEPTED,
            "alice",
            "c" * 40,
        )
        assert found.rows == 3


def _job(repo: Repo, created: datetime, job_id: str = "j1") -> Job:
    return Job(
        job_id, JobKind.CURATION, repo.pk, "d" * 40, {"k": "v"}, JobStatus.QUEUED, "alice", created
    )


def test_a_job_is_claimed_once_and_a_dead_workers_job_is_taken_again(
    store: SqlMetadataStore,
) -> None:
    repo = _repo(store)
    kinds = {JobKind.CURATION}
    with store.session(write=True) as s:
        s.add_job(_job(repo, NOW))
        first = s.claim_job(kinds, NOW, NOW - timedelta(minutes=2), 3)
        assert first is not None
        assert (first.status, first.attempts) == (JobStatus.RUNNING, 1)
        assert s.claim_job(kinds, NOW, NOW - timedelta(minutes=2), 3) is None  # it beats
        later = NOW + timedelta(minutes=5)  # the worker died: no beat for five minutes
        again = s.claim_job(kinds, later, later - timedelta(minutes=2), 3)
        assert again is not None
        assert again.attempts == 2
        # the first attempt's worker comes back: it no longer holds the job
        assert s.beat_job("j1", 1, later, 0.9, "late") is None
        s.finish_job("j1", 1, JobStatus.FAILED, later, {}, "stale", "")
        assert s.beat_job("j1", 2, later, 0.5, "half") is False
        s.finish_job("j1", 2, JobStatus.SUCCEEDED, later, {"commit": "x"}, "", "log")
        done = s.job("j1")
        assert done is not None
        assert (done.status, done.result, done.progress) == (
            JobStatus.SUCCEEDED,
            {"commit": "x"},
            1.0,
        )


def test_a_job_that_keeps_losing_its_worker_is_given_up(store: SqlMetadataStore) -> None:
    repo = _repo(store)
    with store.session(write=True) as s:
        s.add_job(_job(repo, NOW))
        when = NOW
        for _ in range(3):
            assert s.claim_job({JobKind.CURATION}, when, when - timedelta(minutes=2), 3) is not None
            when += timedelta(minutes=5)
        assert s.claim_job({JobKind.CURATION}, when, when - timedelta(minutes=2), 3) is None
        given_up = s.job("j1")
        assert given_up is not None
        assert given_up.status is JobStatus.FAILED
        assert "3 attempts" in given_up.error


def test_cancel_stops_a_queued_job_at_once_and_flags_a_running_one(store: SqlMetadataStore) -> None:
    repo = _repo(store)
    with store.session(write=True) as s:
        s.add_job(_job(repo, NOW, "queued"))
        s.add_job(_job(repo, NOW + timedelta(seconds=1), "running"))
        assert s.cancel_job("queued", NOW) is JobStatus.CANCELLED
        claimed = s.claim_job({JobKind.CURATION}, NOW, NOW - timedelta(minutes=2), 3)
        assert claimed is not None
        assert claimed.id == "running"
        assert s.cancel_job("running", NOW) is JobStatus.RUNNING
        assert s.beat_job("running", 1, NOW, 0.5, "stage") is True
        assert s.cancel_job("missing", NOW) is None


def test_the_worker_records_success_failure_and_cancellation(store: SqlMetadataStore) -> None:
    repo = _repo(store)
    service = JobService(store)
    seen: list[str] = []

    def handler(job: Job, _: Repo, context: JobContext) -> dict[str, Any]:
        seen.append(job.params["mode"])
        context.log(f"working on {job.params['mode']}")
        if job.params["mode"] == "fail":
            raise InvalidInputError("the config is wrong")
        if job.params["mode"] == "crash":
            raise RuntimeError("boom")
        if job.params["mode"] == "cancel":
            service.cancel(job.id)
            context.progress(0.5, "half")
            raise AssertionError("progress should have raised")  # pragma: no cover
        context.progress(0.5, "half")
        return {"done": True}

    worker = JobWorker(store, service, {JobKind.CURATION: handler}, JobTimings(0.01, 60))
    ids = {
        mode: service.queue(JobKind.CURATION, repo, "d" * 40, {"mode": mode}, "alice").id
        for mode in ("ok", "fail", "crash", "cancel")
    }
    while worker.run_next():
        pass
    assert seen == ["ok", "fail", "crash", "cancel"]
    jobs = {mode: service.get(job_id) for mode, job_id in ids.items()}
    assert (jobs["ok"].status, jobs["ok"].result) == (JobStatus.SUCCEEDED, {"done": True})
    assert (jobs["fail"].status, jobs["fail"].error) == (JobStatus.FAILED, "the config is wrong")
    assert jobs["crash"].status is JobStatus.FAILED
    assert "RuntimeError: boom" in jobs["crash"].error
    assert "RuntimeError" in jobs["crash"].log
    assert "Traceback" not in jobs["crash"].log
    assert jobs["cancel"].status is JobStatus.CANCELLED
    assert "working on cancel" in jobs["cancel"].log
    assert all(j.finished_at is not None for j in jobs.values())
