"""Services over real backends (in-memory blobs, SQLite): commits, refs, access, uploads."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from kaiyuan.bootstrap import Hub, assemble
from kaiyuan.config import Settings
from kaiyuan.core.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    AuthenticationError,
    EntryNotFoundError,
    IntegrityError,
    InvalidInputError,
    ProtectedRefError,
    RepoNotFoundError,
    RevisionNotFoundError,
    StaleParentError,
    TooLargeError,
)
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import FileEntry, Principal, Scope
from kaiyuan.services.commits import (
    CommitRequest,
    DeleteFile,
    DeleteFolder,
    PutLfsFile,
    PutRegularFile,
)
from kaiyuan.storage.blobs.memory import MemoryBlobStore
from kaiyuan.storage.sql.store import SqlMetadataStore

MODEL = RepoKind.MODEL
RID = RepoId("alice", "m")


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    store = SqlMetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    store.migrate()
    settings = Settings(data_dir=tmp_path, max_card_bytes=100, max_regular_file_bytes=1000)
    built = assemble(settings, store, MemoryBlobStore())
    built.accounts.create_user("alice")
    built.accounts.create_user("bob")
    built.accounts.create_org("acme", ["alice"])
    return built


def who(hub: Hub, user: str, scope: Scope = Scope.WRITE) -> Principal:
    return hub.accounts.authenticate(hub.accounts.create_token(user, scope))


def files_at(hub: Hub, principal: Principal, revision: str = "main") -> dict[str, bytes]:
    at = hub.reads.resolve(principal, MODEL, RID, revision)
    return {
        e.path: b"".join(hub.contents.open(e.sha256))
        for e in hub.reads.list_tree(at, "", recursive=True)
        if isinstance(e, FileEntry)
    }


def put(*ops: object, parent: str | None = None) -> CommitRequest:
    return CommitRequest("change", "", list(ops), parent)  # type: ignore[arg-type]


def test_commit_apply_and_history(hub: Hub) -> None:
    alice = who(hub, "alice")
    hub.repos.create(alice, MODEL, RID, private=False)
    first = hub.commits.commit(
        alice,
        MODEL,
        RID,
        "main",
        put(PutRegularFile("a/b.txt", b"1"), PutRegularFile("c.txt", b"2")),
    )
    second = hub.commits.commit(
        alice, MODEL, RID, "main", put(DeleteFolder("a/"), PutRegularFile("c.txt", b"3"))
    )
    assert files_at(hub, alice) == {
        ".gitattributes": files_at(hub, alice)[".gitattributes"],
        "c.txt": b"3",
    }
    at = hub.reads.resolve(alice, MODEL, RID, "main")
    history, more = hub.reads.history(at, offset=0, limit=10)
    assert [c.sha for c in history[:2]] == [second.sha, first.sha]
    assert not more
    assert second.parents == (first.sha,)
    assert files_at(hub, alice, first.sha[:8])["a/b.txt"] == b"1"


def test_stale_parent_and_concurrent_commits(hub: Hub) -> None:
    alice = who(hub, "alice")
    hub.repos.create(alice, MODEL, RID, private=False)
    base = hub.reads.resolve(alice, MODEL, RID, "main").commit.sha
    hub.commits.commit(alice, MODEL, RID, "main", put(PutRegularFile("x", b"1"), parent=base))
    with pytest.raises(StaleParentError):
        hub.commits.commit(alice, MODEL, RID, "main", put(PutRegularFile("y", b"2"), parent=base))
    errors: list[Exception] = []

    def writer(n: int) -> None:
        try:
            hub.commits.commit(alice, MODEL, RID, "main", put(PutRegularFile(f"f{n}", b"x")))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {f"f{n}" for n in range(6)} <= set(files_at(hub, alice))
    history, _ = hub.reads.history(
        hub.reads.resolve(alice, MODEL, RID, "main"), offset=0, limit=100
    )
    assert len(history) == 8  # initial + x + six writers, one after another


def test_bad_operations_change_nothing(hub: Hub) -> None:
    alice = who(hub, "alice")
    hub.repos.create(alice, MODEL, RID, private=False)
    before = hub.reads.resolve(alice, MODEL, RID, "main").commit.sha
    bad = [
        (put(DeleteFile("missing.txt")), EntryNotFoundError),
        (put(PutRegularFile("README.md", b"x" * 101)), TooLargeError),
        (put(PutRegularFile("big.bin", b"x" * 1001)), TooLargeError),
        (put(PutRegularFile("../x", b"1")), InvalidInputError),
        (put(PutLfsFile("w.bin", "a" * 64, 3)), InvalidInputError),
        (put(PutRegularFile("d", b"1"), PutRegularFile("d/e", b"2")), InvalidInputError),
        (CommitRequest(" ", "", []), InvalidInputError),
    ]
    for request, error in bad:
        with pytest.raises(error):
            hub.commits.commit(alice, MODEL, RID, "main", request)
    with pytest.raises(RevisionNotFoundError):
        hub.commits.commit(alice, MODEL, RID, "nope", put(PutRegularFile("x", b"1")))
    assert hub.reads.resolve(alice, MODEL, RID, "main").commit.sha == before


def test_access_rules(hub: Hub) -> None:
    alice, bob = who(hub, "alice"), who(hub, "bob")
    reader = who(hub, "alice", Scope.READ)
    org_repo = RepoId("acme", "secret")
    hub.repos.create(alice, MODEL, org_repo, private=True)
    with pytest.raises(RepoNotFoundError):
        hub.reads.resolve(bob, MODEL, org_repo, None)
    with pytest.raises(RepoNotFoundError):
        hub.reads.resolve(Principal(), MODEL, org_repo, None)
    assert hub.reads.resolve(reader, MODEL, org_repo, None).repo.private
    with pytest.raises(AccessDeniedError):
        hub.commits.commit(reader, MODEL, org_repo, "main", put(PutRegularFile("x", b"1")))
    with pytest.raises(AccessDeniedError):
        hub.repos.create(bob, MODEL, RepoId("acme", "bobs"), private=False)
    with pytest.raises(AuthenticationError):
        hub.repos.create(Principal(), MODEL, RepoId("bob", "anon"), private=False)
    with pytest.raises(AuthenticationError):
        hub.accounts.authenticate("ky_0000000000000000nonsense")
    assert [str(r.repo_id) for r in hub.repos.search(alice, MODEL)] == ["acme/secret"]
    assert hub.repos.search(bob, MODEL) == []


def test_refs(hub: Hub) -> None:
    alice = who(hub, "alice")
    hub.repos.create(alice, MODEL, RID, private=False)
    hub.repos.create_branch(alice, MODEL, RID, "feature/x", None)
    hub.repos.create_tag(alice, MODEL, RID, "v1", "feature/x")
    with pytest.raises(AlreadyExistsError):
        hub.repos.create_branch(alice, MODEL, RID, "v1", None)
    with pytest.raises(AlreadyExistsError):
        hub.repos.create(alice, MODEL, RID, private=False)
    with pytest.raises(ProtectedRefError):
        hub.repos.delete_branch(alice, MODEL, RID, "main")
    with pytest.raises(RevisionNotFoundError):
        hub.repos.create_tag(alice, MODEL, RID, "v2", "nope")
    hub.repos.delete_branch(alice, MODEL, RID, "feature/x")
    assert {r.name for r in hub.repos.refs(alice, MODEL, RID)} == {"main", "v1"}


def test_lfs_upload_grant_and_proof_of_possession(hub: Hub) -> None:
    alice, bob = who(hub, "alice"), who(hub, "bob")
    hub.repos.create(alice, MODEL, RID, private=True)
    data = b"weights" * 1000
    digest = hashlib.sha256(data).hexdigest()
    (plan,) = hub.uploads.plan(alice, MODEL, RID, [(digest, len(data))])
    assert plan.grant is not None
    writer = hub.uploads.receiver(plan.grant)
    writer.write(data)
    hub.uploads.finish(plan.grant, writer)
    hub.uploads.verify(alice, MODEL, RID, digest, len(data))
    (again,) = hub.uploads.plan(alice, MODEL, RID, [(digest, len(data))])
    assert again.grant is None  # already held: nothing to send
    hub.commits.commit(alice, MODEL, RID, "main", put(PutLfsFile("w.bin", digest, len(data))))
    # Bob knows the digest but never uploaded the bytes: he cannot reference them.
    bob_repo = RepoId("bob", "copy")
    hub.repos.create(bob, MODEL, bob_repo, private=False)
    with pytest.raises(InvalidInputError):
        hub.commits.commit(
            bob, MODEL, bob_repo, "main", put(PutLfsFile("w.bin", digest, len(data)))
        )
    (bob_plan,) = hub.uploads.plan(bob, MODEL, bob_repo, [(digest, len(data))])
    assert bob_plan.grant is not None  # he must send the bytes himself


def test_tampered_or_oversized_uploads(hub: Hub) -> None:
    alice = who(hub, "alice")
    hub.repos.create(alice, MODEL, RID, private=False)
    digest = hashlib.sha256(b"abc").hexdigest()
    (plan,) = hub.uploads.plan(alice, MODEL, RID, [(digest, 3)])
    assert plan.grant is not None
    forged = type(plan.grant)(
        plan.grant.repo_pk, digest, 4, plan.grant.expires, "", plan.grant.signature
    )
    with pytest.raises(AccessDeniedError):
        hub.uploads.receiver(forged)
    writer = hub.uploads.receiver(plan.grant)
    with pytest.raises(TooLargeError):
        writer.write(b"abcd")
    writer = hub.uploads.receiver(plan.grant)
    writer.write(b"abd")
    with pytest.raises(IntegrityError):
        hub.uploads.finish(plan.grant, writer)
    with pytest.raises(IntegrityError):
        hub.uploads.verify(alice, MODEL, RID, digest, 3)
    bad = hub.uploads.plan(alice, MODEL, RID, [("xyz", 3), (digest, -1)])
    assert all(p.error for p in bad)
