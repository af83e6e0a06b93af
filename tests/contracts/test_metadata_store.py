"""The MetadataStore contract, run against SQLite and a private PostgreSQL cluster."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from kaiyuan.core.errors import AlreadyExistsError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.lineage import (
    EdgeOrigin,
    Finding,
    LicenceAcceptance,
    LicenceReport,
    LineageEdge,
    PolicyAction,
    Relation,
    Severity,
)
from kaiyuan.core.models import (
    AccessRequest,
    AccessStatus,
    AccessToken,
    Account,
    BlobInfo,
    Commit,
    Gating,
    Ref,
    RefKind,
    Scope,
    TreeEntry,
)
from kaiyuan.storage.sql.store import SqlMetadataStore

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def seed(store: SqlMetadataStore) -> None:
    with store.session(write=True) as s:
        s.add_account(Account("alice", False, NOW))
        s.add_account(Account("acme", True, NOW))
        s.add_member("acme", "alice")
        s.add_member("acme", "alice")


def test_accounts_and_members(store: SqlMetadataStore) -> None:
    seed(store)
    with store.session() as s:
        assert s.get_account("alice") == Account("alice", False, NOW)
        assert s.orgs_of("alice") == ["acme"]
        assert s.is_member("acme", "alice")
        assert s.get_account("nobody") is None
    with pytest.raises(AlreadyExistsError), store.session(write=True) as s:
        s.add_account(Account("alice", False, NOW))


def test_tokens_are_found_and_deleted(store: SqlMetadataStore) -> None:
    seed(store)
    token = AccessToken("0123456789abcdef", "alice", Scope.READ, "f" * 64, "laptop", NOW)
    with store.session(write=True) as s:
        s.add_token(token)
    with store.session() as s:
        assert s.find_token(token.token_id) == token
    with store.session(write=True) as s:
        assert s.delete_token(token.token_id)
        assert not s.delete_token(token.token_id)
    with store.session() as s:
        assert s.find_token(token.token_id) is None


def test_repos_refs_and_compare_and_swap(store: SqlMetadataStore) -> None:
    seed(store)
    rid = RepoId("acme", "m")
    with store.session(write=True) as s:
        repo = s.add_repo(RepoKind.MODEL, rid, False, NOW)
        s.add_ref(repo, Ref(RefKind.BRANCH, "main", "a" * 40))
    with pytest.raises(AlreadyExistsError), store.session(write=True) as s:
        s.add_repo(RepoKind.MODEL, rid, False, NOW)
    with store.session(write=True) as s:
        assert s.add_repo(RepoKind.DATASET, rid, True, NOW).kind is RepoKind.DATASET
        assert s.move_branch(repo, "main", "a" * 40, "b" * 40)
        assert not s.move_branch(repo, "main", "a" * 40, "c" * 40)
        assert s.get_ref(repo, RefKind.BRANCH, "main") == Ref(RefKind.BRANCH, "main", "b" * 40)
    with store.session() as s:
        found = s.list_repos(
            RepoKind.MODEL,
            visible_to=None,
            visible_namespaces=(),
            search="M",
            author=None,
            limit=10,
        )
        assert [str(r.repo_id) for r in found] == ["acme/m"]
        hidden = s.list_repos(
            RepoKind.DATASET,
            visible_to=None,
            visible_namespaces=(),
            search=None,
            author=None,
            limit=10,
        )
        assert hidden == []


def test_failed_transaction_leaves_nothing(store: SqlMetadataStore) -> None:
    seed(store)
    with pytest.raises(RuntimeError), store.session(write=True) as s:
        s.add_repo(RepoKind.MODEL, RepoId("acme", "half"), False, NOW)
        raise RuntimeError
    with store.session() as s:
        assert s.get_repo(RepoKind.MODEL, RepoId("acme", "half")) is None


def test_commits_trees_blobs(store: SqlMetadataStore) -> None:
    seed(store)
    with store.session(write=True) as s:
        repo = s.add_repo(RepoKind.MODEL, RepoId("alice", "m"), False, NOW)
        entries = [
            TreeEntry("a.txt", False, "1" * 40, 3, "2" * 64, False),
            TreeEntry("d", True, "3" * 40),
        ]
        s.add_tree("t" * 40, entries)
        s.add_tree("t" * 40, entries)
        commit = Commit("c" * 40, "t" * 40, ("p" * 40,), "title", "title\n\nbody", "alice", NOW)
        s.add_commit(repo, commit)
        s.add_blob(BlobInfo("2" * 64, 3), NOW)
        s.add_blob(BlobInfo("2" * 64, 3), NOW)
        s.add_repo_object(repo.pk, "2" * 64)
    with store.session() as s:
        assert sorted(s.get_tree("t" * 40) or [], key=lambda e: e.name) == entries
        assert s.get_tree("x" * 40) is None
        assert s.get_commit(repo, "c" * 40) == commit
        assert s.find_commits(repo, "ccccccc", 2) == [commit]
        assert s.get_blob("2" * 64) == BlobInfo("2" * 64, 3)
        assert s.has_repo_object(repo.pk, "2" * 64)
    with store.session(write=True) as s:
        s.delete_repo(repo)
    with store.session() as s:
        assert s.get_repo(RepoKind.MODEL, RepoId("alice", "m")) is None
        assert not s.has_repo_object(repo.pk, "2" * 64)


def test_concurrent_compare_and_swap_has_one_winner(store: SqlMetadataStore) -> None:
    seed(store)
    with store.session(write=True) as s:
        repo = s.add_repo(RepoKind.MODEL, RepoId("alice", "race"), False, NOW)
        s.add_ref(repo, Ref(RefKind.BRANCH, "main", "0" * 40))
    wins: list[bool] = []
    lock = threading.Lock()

    def attempt(n: int) -> None:
        with store.session(write=True) as s:
            won = s.move_branch(repo, "main", "0" * 40, f"{n:040d}")
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=attempt, args=(n + 1,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1


def test_gating_and_access_requests(store: SqlMetadataStore) -> None:
    seed(store)
    with store.session(write=True) as s:
        repo = s.add_repo(RepoKind.MODEL, RepoId("acme", "gated"), False, NOW)
        assert repo.gated is None
        s.set_gated(repo, Gating.MANUAL)
    with store.session() as s:
        repo = s.get_repo(RepoKind.MODEL, RepoId("acme", "gated"))
        assert repo is not None
        assert repo.gated is Gating.MANUAL
        assert s.get_access_request(repo, "alice") is None
    asked = AccessRequest("r1", "alice", AccessStatus.PENDING, {"org": "学院"}, NOW)
    with store.session(write=True) as s:
        s.save_access_request(repo, asked)
    with store.session() as s:
        assert s.get_access_request(repo, "alice") == asked
        assert s.access_requests(repo, AccessStatus.PENDING) == [asked]
        assert s.access_requests(repo, AccessStatus.ACCEPTED) == []
    decided = AccessRequest(
        "r1", "alice", AccessStatus.REJECTED, {"org": "学院"}, NOW, NOW, "bob", "no reason"
    )
    with store.session(write=True) as s:
        s.save_access_request(repo, decided)  # replaces the request, one per user
    with store.session() as s:
        assert s.access_requests(repo, AccessStatus.PENDING) == []
        assert s.access_requests(repo, AccessStatus.REJECTED) == [decided]
    with store.session(write=True) as s:
        s.set_gated(repo, None)
    with store.session() as s:
        found = s.get_repo(RepoKind.MODEL, RepoId("acme", "gated"))
        assert found is not None
        assert found.gated is None


def test_a_schema_newer_than_this_version_is_left_alone(store: SqlMetadataStore) -> None:
    """A rolling upgrade: an old process restarts on a database a newer version migrated."""
    from sqlalchemy import text

    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff0001'"))
    assert store.migrate() is False
    assert store.schema_revision() == "ffff0001"
    seed(store)  # and the tables are still there to serve from
    with store.session() as s:
        assert s.get_account("alice") is not None


def test_lineage_reports_policies_and_acceptances(store: SqlMetadataStore) -> None:
    seed(store)
    with store.session(write=True) as s:
        base = s.add_repo(RepoKind.MODEL, RepoId("acme", "base"), False, NOW)
        child = s.add_repo(RepoKind.MODEL, RepoId("acme", "child"), False, NOW)
        s.add_ref(child, Ref(RefKind.BRANCH, "main", "c" * 40))
        edges = [
            LineageEdge(
                RepoKind.MODEL,
                child.repo_id,
                "c" * 40,
                "acme/base",
                Relation.FINETUNE,
                EdgeOrigin.DECLARED,
                base.repo_id,
                "b" * 40,
                NOW,
            ),
            LineageEdge(
                RepoKind.MODEL,
                child.repo_id,
                "c" * 40,
                "elsewhere/x",
                Relation.FINETUNE,
                EdgeOrigin.DECLARED,
                None,
                None,
                NOW,
            ),
        ]
        s.set_lineage_edges(child, "c" * 40, EdgeOrigin.DECLARED, edges)
        s.set_lineage_edges(child, "c" * 40, EdgeOrigin.DECLARED, edges)  # replaces, no duplicates
    with store.session() as s:
        found = s.lineage_edges(child, "c" * 40)
        assert [(e.parent, e.parent_repo, e.parent_commit) for e in found] == [
            ("acme/base", base.repo_id, "b" * 40),
            ("elsewhere/x", None, None),
        ]
        assert [str(e.child) for e in s.lineage_children(base)] == ["acme/child"]
        assert s.lineage_edges(child, "d" * 40) == []
    with store.session(write=True) as s:
        s.add_ref(child, Ref(RefKind.BRANCH, "other", "d" * 40))
        s.move_branch(child, "main", "c" * 40, "e" * 40)  # the child moved on: no longer a child
    with store.session() as s:
        assert s.lineage_children(base) == []

    report = LicenceReport(
        RepoKind.MODEL,
        child.repo_id,
        "c" * 40,
        "mit",
        (Finding("LIC-004", Severity.ERROR, "m", "f", "acme/base", "c", PolicyAction.REJECT),),
        "1",
        NOW,
        {"licence": "mit", "gate_form": {"a": {"type": "text", "options": []}}},
    )
    with store.session(write=True) as s:
        s.save_licence_report(child, report)
        s.save_licence_report(child, report)
        s.set_licence_policy("acme", "LIC-004", PolicyAction.REJECT)
        s.set_licence_policy("acme", "LIC-007", PolicyAction.OFF)
        s.set_licence_policy("acme", "LIC-007", None)
        s.add_licence_acceptance(
            child, LicenceAcceptance("alice", "mit", "1", "c" * 40, NOW, "r" * 24)
        )
    with store.session() as s:
        assert s.licence_report(child, "c" * 40) == report
        assert s.licence_report(child, "f" * 40) is None
        assert s.licence_policy("acme") == {"LIC-004": PolicyAction.REJECT}
        assert s.licence_policy("") == {}
        assert [a.user for a in s.licence_acceptances(child)] == ["alice"]
    with store.session(write=True) as s:
        s.delete_repo(child)
    with store.session() as s:
        assert s.lineage_children(base) == []
