"""Repositories and their refs: create, delete, list, visibility, branches and tags."""

from __future__ import annotations

from kaiyuan.core.digests import git_blob_sha1, git_commit_sha1
from kaiyuan.core.errors import (
    AlreadyExistsError,
    InvalidInputError,
    ProtectedRefError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from kaiyuan.core.ids import RepoId, RepoKind, validate_ref_name
from kaiyuan.core.models import Commit, FileEntry, Principal, Ref, RefKind, Repo
from kaiyuan.core.ports import BlobStore, MetadataSession, MetadataStore
from kaiyuan.services import access, revisions, trees
from kaiyuan.services.clock import Clock, utc_now
from kaiyuan.services.commits import ContentCheck, author_signature

MAX_LIST_LIMIT = 1000
MAX_QUERY_LENGTH = 200

# The attributes file every new repository starts with: common weight and data formats go to LFS.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z",
        "*.arrow",
        "*.bin",
        "*.bz2",
        "*.ckpt",
        "*.ftz",
        "*.gguf",
        "*.gz",
        "*.h5",
        "*.joblib",
        "*.lfs.*",
        "*.mlmodel",
        "*.model",
        "*.msgpack",
        "*.npy",
        "*.npz",
        "*.onnx",
        "*.ot",
        "*.parquet",
        "*.pb",
        "*.pickle",
        "*.pkl",
        "*.pt",
        "*.pth",
        "*.rar",
        "*.safetensors",
        "saved_model/**/*",
        "*.tar.*",
        "*.tar",
        "*.tflite",
        "*.tgz",
        "*.wasm",
        "*.xz",
        "*.zip",
        "*.zst",
        "*tfevents*",
    )
).encode()


class RepoService:
    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobStore,
        cache: trees.TreeCache,
        clock: Clock = utc_now,
        check: ContentCheck | None = None,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._cache = cache
        self._clock = clock
        self._check = check

    def create(self, principal: Principal, kind: RepoKind, repo_id: RepoId, private: bool) -> Repo:
        """Create a repository with an initial commit on `main` holding `.gitattributes`."""
        access.require_write(principal, repo_id.namespace)
        writer = self._blobs.writer()
        writer.write(DEFAULT_GITATTRIBUTES)
        blob = writer.commit()
        if self._check is not None:  # the hub's own file gets its verdict like any other
            self._check.check([(".gitattributes", blob.sha256)])
        now = self._clock()
        entry = FileEntry(
            ".gitattributes",
            git_blob_sha1(DEFAULT_GITATTRIBUTES),
            blob.size,
            blob.sha256,
            lfs=False,
        )
        root, new_trees = trees.build({entry.path: entry})
        author = principal.user or "kaiyuan"
        message = "initial commit"
        sha = git_commit_sha1(root, [], author_signature(author, now), message)
        with self._store.session(write=True) as session:
            if session.get_account(repo_id.namespace) is None:
                raise RepoNotFoundError(f"namespace {repo_id.namespace!r} does not exist")
            repo = session.add_repo(kind, repo_id, private, now)
            session.add_blob(blob, now)
            session.add_repo_object(repo.pk, blob.sha256)
            for tree_sha, entries in new_trees.items():
                session.add_tree(tree_sha, entries)
            session.add_commit(repo, Commit(sha, root, (), message, message, author, now))
            session.add_ref(repo, Ref(RefKind.BRANCH, "main", sha))
        return repo

    def get(self, principal: Principal, kind: RepoKind, repo_id: RepoId) -> Repo:
        with self._store.session() as session:
            return access.visible_repo(session, principal, kind, repo_id)

    def delete(self, principal: Principal, kind: RepoKind, repo_id: RepoId) -> None:
        """Delete a repository and its refs and commits. Blobs stay for other repos to share."""
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            session.delete_repo(repo)

    def set_private(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, private: bool
    ) -> Repo:
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            session.set_private(repo, private)
        return Repo(
            repo.pk,
            repo.kind,
            repo.repo_id,
            private,
            repo.created_at,
            repo.updated_at,
            repo.default_branch,
        )

    def search(
        self,
        principal: Principal,
        kind: RepoKind,
        *,
        search: str | None = None,
        author: str | None = None,
        limit: int = 100,
    ) -> list[Repo]:
        """Repositories the caller may see, most recently updated first."""
        for text in (search, author):
            if text is not None and (len(text) > MAX_QUERY_LENGTH or not text.isprintable()):
                raise InvalidInputError("search and author must be printable, at most 200 chars")
        with self._store.session() as session:
            return session.list_repos(
                kind,
                visible_to=principal.user,
                visible_namespaces=access.namespaces_of(principal),
                search=search,
                author=author,
                limit=max(1, min(limit, MAX_LIST_LIMIT)),
            )

    def refs(self, principal: Principal, kind: RepoKind, repo_id: RepoId) -> list[Ref]:
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            return session.list_refs(repo)

    def create_branch(
        self,
        principal: Principal,
        kind: RepoKind,
        repo_id: RepoId,
        branch: str,
        starting_point: str | None,
    ) -> Ref:
        """A new branch at `starting_point` (any revision; the default branch when absent)."""
        validate_ref_name(branch)
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            commit = revisions.resolve(session, repo, starting_point or repo.default_branch)
            _refuse_name_clash(session, repo, branch)
            ref = Ref(RefKind.BRANCH, branch, commit.sha)
            session.add_ref(repo, ref)
            session.touch_repo(repo, self._clock())
        return ref

    def delete_branch(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, branch: str
    ) -> None:
        revisions.check_name(branch)
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            if branch == repo.default_branch:
                raise ProtectedRefError(f"the default branch {branch!r} cannot be deleted")
            if session.get_ref(repo, RefKind.BRANCH, branch) is None:
                raise RevisionNotFoundError(f"branch {branch!r} not found in {repo_id}")
            session.delete_ref(repo, RefKind.BRANCH, branch)

    def create_tag(
        self,
        principal: Principal,
        kind: RepoKind,
        repo_id: RepoId,
        tag: str,
        revision: str,
    ) -> Ref:
        validate_ref_name(tag)
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            commit = revisions.resolve(session, repo, revision)
            _refuse_name_clash(session, repo, tag)
            ref = Ref(RefKind.TAG, tag, commit.sha)
            session.add_ref(repo, ref)
        return ref

    def delete_tag(self, principal: Principal, kind: RepoKind, repo_id: RepoId, tag: str) -> None:
        revisions.check_name(tag)
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            if session.get_ref(repo, RefKind.TAG, tag) is None:
                raise RevisionNotFoundError(f"tag {tag!r} not found in {repo_id}")
            session.delete_ref(repo, RefKind.TAG, tag)


def _refuse_name_clash(session: MetadataSession, repo: Repo, name: str) -> None:
    # One name, one meaning: a branch and a tag may not share it.
    for kind in (RefKind.BRANCH, RefKind.TAG):
        if session.get_ref(repo, kind, name) is not None:
            raise AlreadyExistsError(f"a {kind.value} named {name!r} already exists")
