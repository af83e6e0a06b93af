"""Commits: apply a list of file operations to a branch head, atomically."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from kaiyuan.core.digests import GitSignature, git_blob_sha1, git_commit_sha1, lfs_pointer_sha1
from kaiyuan.core.errors import (
    BlobNotFoundError,
    EntryNotFoundError,
    IntegrityError,
    InvalidInputError,
    RevisionNotFoundError,
    StaleParentError,
    TooLargeError,
)
from kaiyuan.core.ids import RepoId, RepoKind, validate_path, validate_sha1, validate_sha256
from kaiyuan.core.models import BlobInfo, Commit, FileEntry, Principal, RefKind, Repo
from kaiyuan.core.ports import BlobStore, MetadataSession, MetadataStore
from kaiyuan.core.sealing import SealedFile
from kaiyuan.services import access, cards, revisions, trees
from kaiyuan.services.clock import Clock, utc_now
from kaiyuan.services.contents import ContentStore

MAX_TITLE_LENGTH = 1000
MAX_MESSAGE_LENGTH = 64 * 1024
_CAS_ATTEMPTS = 5
_INLINE_WRITERS = 8


class _BranchMovedError(Exception):
    """The branch head changed between reading it and moving it (the lock makes this rare)."""


@dataclass(frozen=True, slots=True)
class PutRegularFile:
    """A small file whose bytes travel inside the commit."""

    path: str
    content: bytes


@dataclass(frozen=True, slots=True)
class PutLfsFile:
    """A file whose bytes were uploaded before the commit (LFS), named by sha256 and size."""

    path: str
    sha256: str
    size: int | None


@dataclass(frozen=True, slots=True)
class DeleteFile:
    path: str


@dataclass(frozen=True, slots=True)
class DeleteFolder:
    path: str


Operation = PutRegularFile | PutLfsFile | DeleteFile | DeleteFolder


@dataclass(frozen=True, slots=True)
class CommitRequest:
    title: str
    description: str
    operations: list[Operation]
    parent_commit: str | None = None


@dataclass(frozen=True, slots=True)
class CommitLimits:
    max_regular_file_bytes: int = 10 * 1024 * 1024
    max_card_bytes: int = 1024 * 1024
    max_operations: int = 25_000


CARD_FILES = frozenset({"README.md"})


def _check_card(path: str, content: bytes) -> None:
    """A model or dataset card must be UTF-8 with parseable metadata (the clients parse it too)."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{path!r} is not valid UTF-8") from None
    cards.parse_card(text)


class CommitReview(Protocol):
    """Looks at a commit before it lands, inside its transaction.

    It may record what it learns (in `session`) or raise a domain error, which refuses the
    commit and rolls everything back.
    """

    def review(
        self,
        session: MetadataSession,
        principal: Principal,
        repo: Repo,
        branch: str,
        files: dict[str, FileEntry],
        commit: Commit,
    ) -> None: ...


class ContentCheck(Protocol):
    """Looks at the contents a commit adds before its transaction (the scanner).

    It may raise a domain error, which refuses the commit before any metadata changes.
    """

    def check(self, files: Iterable[tuple[str, str]]) -> object:
        """`files` are (path, sha256) of the contents the commit puts."""
        ...


@dataclass(frozen=True, slots=True)
class SealedPuts:
    """A commit's operations with sealed files' ciphertexts in place of their plaintexts."""

    operations: list[Operation]
    blobs: dict[int, BlobInfo]
    records: list[SealedFile]
    plaintexts: frozenset[str]


class ContentSealer(Protocol):
    """Seals the files a repository's policy names (sealed repositories).

    `seal_puts` runs after the scanner, before the transaction, and writes the ciphertexts;
    `record` runs inside the transaction; `forget_plaintexts` after it committed.
    """

    def seal_puts(
        self,
        kind: RepoKind,
        repo_id: RepoId,
        operations: list[Operation],
        blobs: dict[int, BlobInfo],
    ) -> SealedPuts | None: ...

    def record(self, session: MetadataSession, repo: Repo, sealed: SealedPuts) -> None: ...

    def forget_plaintexts(self, kind: RepoKind, repo_id: RepoId, sealed: SealedPuts) -> None: ...


def author_signature(author: str, when: datetime) -> GitSignature:
    return GitSignature(author, f"{author}@users.noreply.kaiyuan", int(when.timestamp()))


class CommitService:
    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobStore,
        contents: ContentStore,
        cache: trees.TreeCache,
        limits: CommitLimits,
        clock: Clock = utc_now,
        reviews: Sequence[CommitReview] = (),
        check: ContentCheck | None = None,
        sealer: ContentSealer | None = None,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._reviews = tuple(reviews)
        self._check = check
        self._blobs = blobs
        self._contents = contents
        self._cache = cache
        self._limits = limits
        self._clock = clock

    def commit(
        self,
        principal: Principal,
        kind: RepoKind,
        repo_id: RepoId,
        branch: str,
        request: CommitRequest,
        *,
        write_checked: bool = False,
    ) -> Commit:
        """Apply the operations on top of `branch` as one new commit, or change nothing.

        With `parent_commit`, the branch must still point at it (else StaleParentError); without,
        a concurrent commit is retried on the new head. `write_checked`: the calling service
        has itself decided that `principal` may write to this branch (a contributor to a
        co-built dataset writes only to its contribution's branch).
        """
        self._check_request(request)
        revisions.check_name(branch)
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            if not write_checked:
                access.require_write(principal, repo_id.namespace)
            _head(session, repo, branch, request.parent_commit)  # fail early, store nothing
        # Inline bytes and uploaded blobs are checked before any metadata changes.
        # Only contents this repository received are looked at (sized, parsed, scanned,
        # sealed): nothing may give away anything about bytes uploaded elsewhere.
        self._require_uploaded(principal, kind, repo_id, request.operations)
        blobs = self._store_contents(request.operations)
        if self._check is not None:
            self._check.check((request.operations[i].path, b.sha256) for i, b in blobs.items())
        sealed = None
        if self._sealer is not None:
            # After the scan (the verdict is on the plaintext), before anything is recorded.
            sealed = self._sealer.seal_puts(kind, repo_id, list(request.operations), blobs)
            if sealed is not None:
                request = replace(request, operations=sealed.operations)
                blobs = sealed.blobs
        for _ in range(_CAS_ATTEMPTS):
            try:
                commit = self._try_commit(principal, kind, repo_id, branch, request, blobs, sealed)
            except _BranchMovedError:
                if request.parent_commit:
                    break
                continue
            if sealed is not None and self._sealer is not None:
                self._sealer.forget_plaintexts(kind, repo_id, sealed)
            return commit
        raise StaleParentError(f"branch {branch!r} moved during the commit; retry")

    def _try_commit(
        self,
        principal: Principal,
        kind: RepoKind,
        repo_id: RepoId,
        branch: str,
        request: CommitRequest,
        blobs: dict[int, BlobInfo],
        sealed: SealedPuts | None = None,
    ) -> Commit:
        """One attempt in one transaction; _BranchMovedError (nothing stored) if it raced."""
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            session.lock_branch(repo, branch)
            head = _head(session, repo, branch, request.parent_commit)
            files = trees.flatten(session, self._cache, head.tree)
            _apply(files, request.operations, blobs, head.sha)
            root, new_trees = trees.build(files)
            now = self._clock()
            author = principal.user or "anonymous"
            message = request.title
            if request.description:
                message = f"{request.title}\n\n{request.description}"
            sha = git_commit_sha1(root, [head.sha], author_signature(author, now), message)
            commit = Commit(sha, root, (head.sha,), request.title, message, author, now)
            for review in self._reviews:
                review.review(session, principal, repo, branch, files, commit)
            if sealed is not None and self._sealer is not None:
                self._sealer.record(session, repo, sealed)
            for index, blob in blobs.items():
                op = request.operations[index]
                if isinstance(op, PutLfsFile) and not session.has_repo_object(repo.pk, op.sha256):
                    raise InvalidInputError(
                        f"LFS object {op.sha256} for {op.path!r} was not uploaded to {repo_id}"
                    )
                session.add_blob(blob, now)
                session.add_repo_object(repo.pk, blob.sha256)
            for tree_sha, entries in new_trees.items():
                session.add_tree(tree_sha, entries)
            session.add_commit(repo, commit)
            if not session.move_branch(repo, branch, head.sha, sha):
                raise _BranchMovedError  # rolls the whole attempt back
            session.touch_repo(repo, now)
            return commit

    def _require_uploaded(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, operations: list[Operation]
    ) -> None:
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            for op in operations:
                if isinstance(op, PutLfsFile) and not session.has_repo_object(repo.pk, op.sha256):
                    raise InvalidInputError(
                        f"LFS object {op.sha256} for {op.path!r} was not uploaded to {repo_id}"
                    )

    def _check_request(self, request: CommitRequest) -> None:
        if not request.title or not request.title.strip():
            raise InvalidInputError("a commit needs a non-empty summary")
        if len(request.title) > MAX_TITLE_LENGTH or len(request.description) > MAX_MESSAGE_LENGTH:
            raise TooLargeError("commit summary or description is too long")
        if len(request.operations) > self._limits.max_operations:
            raise TooLargeError(
                f"a commit may hold at most {self._limits.max_operations} operations"
            )
        if request.parent_commit is not None:
            validate_sha1(request.parent_commit)
        for op in request.operations:
            self._check_operation(op)

    def _check_operation(self, op: Operation) -> None:
        validate_path(op.path.rstrip("/") if isinstance(op, DeleteFolder) else op.path)
        if isinstance(op, PutRegularFile):
            limit = self._limits.max_regular_file_bytes
            if op.path in CARD_FILES:
                limit = self._limits.max_card_bytes
            if len(op.content) > limit:
                raise TooLargeError(
                    f"{op.path!r} is {len(op.content)} bytes; the limit for this file is "
                    f"{limit} bytes (upload large files through LFS)"
                )
            if op.path in CARD_FILES:
                _check_card(op.path, op.content)
        elif isinstance(op, PutLfsFile):
            validate_sha256(op.sha256)
            if op.size is not None and op.size < 0:
                raise InvalidInputError(f"negative size for {op.path!r}")

    def _store_inline(self, content: bytes) -> BlobInfo:
        writer = self._blobs.writer()
        try:
            writer.write(content)
            return writer.commit()
        finally:
            writer.abort()

    def _store_contents(self, operations: list[Operation]) -> dict[int, BlobInfo]:
        """The blob behind each put operation, by operation index; inline bytes get stored."""
        inline = [
            (i, op.content) for i, op in enumerate(operations) if isinstance(op, PutRegularFile)
        ]
        # Small files are many and each is one round trip to an object store: write in parallel.
        with ThreadPoolExecutor(max_workers=_INLINE_WRITERS) as pool:
            infos = pool.map(self._store_inline, [content for _, content in inline])
            stored = dict(zip([i for i, _ in inline], infos, strict=True))
        for index, op in enumerate(operations):
            if isinstance(op, PutLfsFile):
                try:
                    info = self._contents.stat(op.sha256)
                except BlobNotFoundError:
                    raise InvalidInputError(
                        f"LFS object {op.sha256} for {op.path!r} was never uploaded"
                    ) from None
                if op.size is not None and info.size != op.size:
                    raise IntegrityError(
                        f"LFS object {op.sha256} is {info.size} bytes, the commit says {op.size}"
                    )
                if op.path in CARD_FILES:
                    if info.size > self._limits.max_card_bytes:
                        raise TooLargeError(
                            f"{op.path!r} is {info.size} bytes; the limit for a card is "
                            f"{self._limits.max_card_bytes} bytes"
                        )
                    _check_card(op.path, b"".join(self._contents.open(op.sha256)))
                stored[index] = info
        return stored


def _head(session: MetadataSession, repo: Repo, branch: str, parent: str | None) -> Commit:
    """The commit at the tip of `branch`, checked against the expected parent."""
    head_ref = session.get_ref(repo, RefKind.BRANCH, branch)
    if head_ref is None:
        raise RevisionNotFoundError(f"branch {branch!r} not found in {repo.repo_id}")
    if parent and parent != head_ref.target:
        raise StaleParentError(
            f"parent commit {parent} is not the head of {branch!r} ({head_ref.target}); "
            "fetch the new head and retry"
        )
    head = session.get_commit(repo, head_ref.target)
    if head is None:
        raise RevisionNotFoundError(f"head of {branch!r} is missing")
    return head


def _apply(
    files: dict[str, FileEntry],
    operations: list[Operation],
    blobs: dict[int, BlobInfo],
    head: str,
) -> None:
    for index, op in enumerate(operations):
        if isinstance(op, PutRegularFile):
            digest = blobs[index].sha256
            files[op.path] = FileEntry(
                op.path, git_blob_sha1(op.content), len(op.content), digest, lfs=False
            )
        elif isinstance(op, PutLfsFile):
            size = blobs[index].size
            files[op.path] = FileEntry(
                op.path, lfs_pointer_sha1(op.sha256, size), size, op.sha256, lfs=True
            )
        elif isinstance(op, DeleteFile):
            if files.pop(op.path, None) is None:
                raise EntryNotFoundError(f"cannot delete {op.path!r}: no such file", head)
        else:
            prefix = op.path.rstrip("/") + "/"
            doomed = [p for p in files if p.startswith(prefix)]
            if not doomed:
                raise EntryNotFoundError(f"cannot delete folder {op.path!r}: no such folder", head)
            for path in doomed:
                del files[path]
