"""Sealed repositories' rows on SQLite and PostgreSQL: policies, kept keys, challenges, audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import BlobInfo, TreeEntry
from kaiyuan.core.sealing import (
    Attestation,
    Challenge,
    KeyRelease,
    ReleaseOutcome,
    SealedFile,
    SealingPolicy,
    WrappedKey,
)
from kaiyuan.storage.sql.store import SqlMetadataStore

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def sealed_file(sha: str, repo_pk: int, kek: str = "kek-0000000000000001") -> SealedFile:
    return SealedFile(
        sha,
        repo_pk,
        sha[32:],
        "权重/model.safetensors",
        "e" * 64,
        1234,
        WrappedKey(kek, b"\x00\xffkey"),
        NOW,
    )


def test_policies_round_trip_and_are_replaced(store: SqlMetadataStore) -> None:
    with store.session(write=True) as s:
        repo = s.add_repo(RepoKind.MODEL, RepoId("acme", "sealed"), False, NOW)
        assert s.sealing_policy(repo) is None
        first = SealingPolicy(
            ("*.safetensors", "权重/*"), Attestation.REQUIRED, ("bob", "acme"), NOW, "alice"
        )
        s.set_sealing_policy(repo, first)
    with store.session(write=True) as s:
        assert s.sealing_policy(repo) == first
        s.set_sealing_policy(repo, SealingPolicy(("*.bin",), updated_at=NOW, updated_by="alice"))
    with store.session() as s:
        found = s.sealing_policy(repo)
        assert found is not None and found.patterns == ("*.bin",) and found.allowed == ()


def test_sealed_files_belong_to_their_repository_and_rewrap(store: SqlMetadataStore) -> None:
    shas = [f"{i:064x}" for i in range(600)]  # more than one IN (...) batch
    with store.session(write=True) as s:
        mine = s.add_repo(RepoKind.MODEL, RepoId("acme", "sealed"), False, NOW)
        other = s.add_repo(RepoKind.MODEL, RepoId("acme", "other"), False, NOW)
        assert not s.repo_has_sealed_files(mine)
        for sha in shas:
            s.add_sealed_file(sealed_file(sha, mine.pk))
        s.add_sealed_file(sealed_file("f" * 64, other.pk, "kek-0000000000000002"))
    with store.session() as s:
        found = s.sealed_files([*shas, "a" * 64, "f" * 64])
        assert set(found) == {*shas, "f" * 64}
        assert found[shas[0]] == sealed_file(shas[0], mine.pk)
        # Asked for a repository: only what it sealed, whoever else holds the bytes.
        assert set(s.sealed_files([*shas, "f" * 64], mine)) == set(shas)
        assert set(s.sealed_files([*shas, "f" * 64], other)) == {"f" * 64}
        assert s.repo_has_sealed_files(mine) and s.repo_has_sealed_files(other)
        assert s.kek_ids_in_use() == {"kek-0000000000000001", "kek-0000000000000002"}
        assert len(s.sealed_files_wrapped_by({"kek-0000000000000002"})) == 1
        assert len(s.sealed_files_wrapped_by(None)) == 601
    old = sealed_file(shas[0], mine.pk).key
    fresh = WrappedKey("kek-0000000000000002", b"new")
    with store.session(write=True) as s:
        assert s.rewrap_sealed_file(shas[0], old, fresh)
        # Only if the key is still the one read: a concurrent rewrap is not undone.
        assert not s.rewrap_sealed_file(shas[0], old, fresh)
    with store.session() as s:
        assert s.sealed_files([shas[0]])[shas[0]].key == fresh
    with store.session(write=True) as s:
        s.delete_repo(other)  # its sealed files go with it
    with store.session() as s:
        assert s.sealed_files(["f" * 64]) == {}


def test_challenges_are_single_use_per_user_and_expire(store: SqlMetadataStore) -> None:
    with store.session(write=True) as s:
        repo = s.add_repo(RepoKind.MODEL, RepoId("acme", "sealed"), False, NOW)
        other = s.add_repo(RepoKind.MODEL, RepoId("acme", "other"), False, NOW)
        for nonce in ("1" * 64, "2" * 64, "3" * 64):
            s.add_challenge(repo, Challenge(nonce, "bob", NOW + timedelta(minutes=5)), NOW)
    with store.session(write=True) as s:
        assert not s.take_challenge(repo, "1" * 64, "alice", NOW)  # another user's
        assert not s.take_challenge(other, "1" * 64, "bob", NOW)  # another repository's
        assert s.take_challenge(repo, "1" * 64, "bob", NOW)
        assert not s.take_challenge(repo, "1" * 64, "bob", NOW)  # used
        assert not s.take_challenge(repo, "2" * 64, "bob", NOW + timedelta(minutes=6))  # expired
    with store.session(write=True) as s:
        # Adding a challenge clears the expired ones.
        s.add_challenge(
            repo, Challenge("4" * 64, "bob", NOW + timedelta(hours=1)), NOW + timedelta(minutes=30)
        )
        assert not s.take_challenge(repo, "3" * 64, "bob", NOW)


def test_audit_and_revocations(store: SqlMetadataStore) -> None:
    with store.session(write=True) as s:
        repo = s.add_repo(RepoKind.MODEL, RepoId("acme", "sealed"), False, NOW)
        for i in range(5):
            s.add_key_release(
                repo,
                KeyRelease(
                    NOW + timedelta(seconds=i),
                    "bob",
                    "tok",
                    "a" * 40,
                    ReleaseOutcome.RELEASED if i % 2 else ReleaseOutcome.REFUSED,
                    f"reason {i} 中文",
                    ("model.safetensors",),
                    ("b" * 32,),
                    "127.0.0.1",
                ),
            )
        assert s.revoke_keys(repo, "bob", NOW, "alice")
        assert not s.revoke_keys(repo, "bob", NOW, "alice")
        assert s.revoke_keys(repo, "acme", NOW, "alice")
    with store.session(write=True) as s:
        log = s.key_releases(repo, 3)
        assert [r.reason for r in log] == ["reason 4 中文", "reason 3 中文", "reason 2 中文"]
        assert log[1].outcome is ReleaseOutcome.RELEASED and log[1].at == NOW + timedelta(seconds=3)
        assert [r[0] for r in s.revocations(repo)] == ["acme", "bob"]
        assert s.restore_keys(repo, "bob") and not s.restore_keys(repo, "bob")
        assert [r[0] for r in s.revocations(repo)] == ["acme"]


def test_forgetting_an_upload(store: SqlMetadataStore) -> None:
    plain, committed = "c" * 64, "d" * 64
    with store.session(write=True) as s:
        repo = s.add_repo(RepoKind.MODEL, RepoId("acme", "sealed"), False, NOW)
        other = s.add_repo(RepoKind.MODEL, RepoId("acme", "other"), False, NOW)
        for sha in (plain, committed):
            s.add_blob(BlobInfo(sha, 10), NOW)
            s.add_repo_object(repo.pk, sha)
        s.add_repo_object(other.pk, plain)
        s.add_tree("1" * 40, [TreeEntry("x.bin", False, "2" * 40, 10, committed, True)])
    with store.session(write=True) as s:
        assert not s.forget_upload(repo.pk, committed)  # a tree names it: kept
        assert s.has_repo_object(repo.pk, committed)
        assert not s.forget_upload(repo.pk, plain)  # another repository still holds it
        assert not s.has_repo_object(repo.pk, plain)
        assert s.forget_upload(other.pk, plain)
