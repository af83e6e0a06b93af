"""The provenance rows on SQLite and PostgreSQL: the queue, results, digests, matches."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.provenance import FingerprintStatus, ProvenanceMatch, TensorDigest
from kaiyuan.storage.sql.store import SqlMetadataStore

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = NOW + timedelta(hours=2)


def digest(name: str, value: str) -> TensorDigest:
    return TensorDigest("model.safetensors", name, "F32", (4, 4), value * 64)


def test_queue_claim_finish_and_results(store: SqlMetadataStore) -> None:
    with store.session(write=True) as s:
        base = s.add_repo(RepoKind.MODEL, RepoId("acme", "base"), False, NOW)
        child = s.add_repo(RepoKind.MODEL, RepoId("acme", "child"), False, NOW)
        assert not s.fingerprint_waiting(NOW - timedelta(hours=1), 3)
        assert s.queue_fingerprint(base, "b" * 40, NOW)
        assert not s.queue_fingerprint(base, "b" * 40, NOW)  # once per revision
        assert s.queue_fingerprint(child, "c" * 40, NOW + timedelta(seconds=1))
    with store.session(write=True) as s:
        first = s.claim_fingerprint(NOW, NOW - timedelta(hours=1), 3)
        second = s.claim_fingerprint(NOW, NOW - timedelta(hours=1), 3)
        third = s.claim_fingerprint(NOW, NOW - timedelta(hours=1), 3)
    assert first is not None and second is not None
    assert (first[0].repo_id, first[1]) == (base.repo_id, "b" * 40)  # oldest first
    assert (second[0].repo_id, second[1]) == (child.repo_id, "c" * 40)
    assert third is None
    with store.session() as s:
        assert not s.fingerprint_waiting(NOW - timedelta(hours=1), 3)  # both claimed
        assert s.fingerprint_waiting(NOW + timedelta(hours=1), 3)  # unless their workers died
    with store.session(write=True) as s:
        s.finish_fingerprint(
            base,
            "b" * 40,
            FingerprintStatus.RUNNING,
            NOW,
            method="m",
            summary={"layers": 2},
            sketch=b"sketch",
            tensors=(digest("a", "1"), digest("b", "2")),
        )
        s.finish_fingerprint(
            child,
            "c" * 40,
            FingerprintStatus.RUNNING,
            NOW,
            method="m",
            tensors=(digest("a", "1"), digest("c", "3")),
        )
        s.mark_fingerprint(base, "b" * 40, FingerprintStatus.DONE, NOW)
    with store.session() as s:
        found = s.fingerprint(base, "b" * 40)
        assert found is not None and found.status is FingerprintStatus.DONE
        assert found.summary == {"layers": 2} and found.finished_at == NOW
        assert s.fingerprint_sketch(base, "b" * 40) == b"sketch"
        assert s.tensor_digests(base, "b" * 40) == [digest("a", "1"), digest("b", "2")]
        assert s.shared_digests(child, "c" * 40) == {(base.pk, "b" * 40): 1}
        # a running fingerprint is not yet a candidate for others
        assert [r.repo_id for r, _ in s.fingerprinted_models()] == [base.repo_id]
    match = ProvenanceMatch(
        base.repo_id,
        "b" * 40,
        0.9,
        0.01,
        0.15,
        "derived",
        0.8,
        1,
        {"layer_map": [[0, 0, 0.9]]},
        NOW,
    )
    with store.session(write=True) as s:
        s.save_provenance_matches(child, "c" * 40, [(base, match)])
        s.save_provenance_matches(child, "c" * 40, [(base, match)])  # replaces
    with store.session() as s:
        assert s.provenance_matches(child, "c" * 40) == [match]
    with store.session(write=True) as s:  # a new try replaces digests and matches
        s.finish_fingerprint(child, "c" * 40, FingerprintStatus.FAILED, NOW, error="bad")
    with store.session() as s:
        assert s.provenance_matches(child, "c" * 40) == []
        assert s.tensor_digests(child, "c" * 40) == []
        failed = s.fingerprint(child, "c" * 40)
        assert failed is not None and failed.error == "bad"
    with store.session(write=True) as s:
        s.delete_repo(base)
    with store.session() as s:
        assert s.fingerprinted_models() == []


def test_abandoned_jobs_are_claimed_again_up_to_the_attempt_limit(
    store: SqlMetadataStore,
) -> None:
    with store.session(write=True) as s:
        repo = s.add_repo(RepoKind.MODEL, RepoId("acme", "m"), False, NOW)
        s.queue_fingerprint(repo, "a" * 40, NOW)
    for attempt in range(2):
        with store.session(write=True) as s:
            when = NOW + timedelta(hours=2 * attempt)
            assert s.claim_fingerprint(when, when - timedelta(hours=1), 2) is not None
    with store.session(write=True) as s:  # attempts exhausted
        assert s.claim_fingerprint(NOW + timedelta(hours=9), NOW + timedelta(hours=8), 2) is None
    with store.session(write=True) as s:
        s.requeue_fingerprint(repo, "a" * 40, LATER)
        assert s.claim_fingerprint(LATER, NOW, 2) is not None


def test_two_workers_never_claim_the_same_job(store: SqlMetadataStore) -> None:
    with store.session(write=True) as s:
        repo = s.add_repo(RepoKind.MODEL, RepoId("acme", "m"), False, NOW)
        for i in range(6):
            s.queue_fingerprint(repo, f"{i:040d}", NOW + timedelta(seconds=i))
    claimed: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        while True:
            with store.session(write=True) as s:
                job = s.claim_fingerprint(NOW, NOW - timedelta(hours=1), 3)
            if job is None:
                return
            with lock:
                claimed.append(job[1])

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == [f"{i:040d}" for i in range(6)]
