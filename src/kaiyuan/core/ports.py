"""Ports: what services need from storage. Backends in `kaiyuan.storage` implement them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Protocol

from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import (
    AccessToken,
    Account,
    BlobInfo,
    Commit,
    Ref,
    RefKind,
    Repo,
    StoredXorb,
    TreeEntry,
    XetFile,
)


class BlobWriter(Protocol):
    """An in-progress blob: bytes are hashed while written and land only on `commit`."""

    def write(self, data: bytes) -> None: ...

    @property
    def size(self) -> int: ...

    def commit(
        self, expected_sha256: str | None = None, expected_size: int | None = None
    ) -> BlobInfo:
        """Check digest and size, then make the blob visible; raises IntegrityError otherwise."""
        ...

    def abort(self) -> None:
        """Discard everything written; safe to call more than once or after commit."""
        ...


class BlobStore(Protocol):
    """Content-addressed bytes keyed by sha256. Identical content is stored once."""

    def writer(self) -> BlobWriter: ...

    def exists(self, sha256: str) -> bool: ...

    def stat(self, sha256: str) -> BlobInfo:
        """Size of a stored blob; raises BlobNotFoundError."""
        ...

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes [start, end) of a blob in large pieces; raises BlobNotFoundError."""
        ...

    def local_path(self, sha256: str) -> Path | None:
        """A file holding the blob, when the backend has one (lets the edge send it zero-copy)."""
        ...

    def delete(self, sha256: str) -> None: ...

    def iter_digests(self) -> Iterator[str]: ...

    # Multipart uploads: parts are staged apart and joined, hashed, on completion.
    def write_part(self, upload_id: str, part_number: int) -> BlobWriter:
        """A writer for one part; `commit()` on it stores the part (not as a blob)."""
        ...

    def complete_parts(
        self, upload_id: str, part_count: int, expected_sha256: str, expected_size: int
    ) -> BlobInfo:
        """Join parts 1..part_count into one blob after digest and size checks; drop the parts."""
        ...


class MetadataSession(Protocol):
    """One transaction over the metadata. Everything done in it lands together or not at all."""

    # accounts
    def add_account(self, account: Account) -> None: ...
    def get_account(self, name: str) -> Account | None: ...
    def add_member(self, org: str, user: str) -> None: ...
    def orgs_of(self, user: str) -> list[str]: ...
    def is_member(self, org: str, user: str) -> bool: ...
    def add_token(self, token: AccessToken) -> None: ...
    def find_token(self, token_id: str) -> AccessToken | None: ...

    # repositories
    def add_repo(self, kind: RepoKind, repo_id: RepoId, private: bool, now: datetime) -> Repo: ...
    def get_repo(self, kind: RepoKind, repo_id: RepoId) -> Repo | None: ...
    def delete_repo(self, repo: Repo) -> None: ...
    def touch_repo(self, repo: Repo, now: datetime) -> None: ...
    def set_private(self, repo: Repo, private: bool) -> None: ...
    def list_repos(
        self,
        kind: RepoKind,
        *,
        visible_to: str | None,
        visible_namespaces: tuple[str, ...],
        search: str | None,
        author: str | None,
        limit: int,
    ) -> list[Repo]: ...

    # refs
    def get_ref(self, repo: Repo, kind: RefKind, name: str) -> Ref | None: ...
    def list_refs(self, repo: Repo) -> list[Ref]: ...
    def add_ref(self, repo: Repo, ref: Ref) -> None: ...
    def move_branch(self, repo: Repo, name: str, old: str, new: str) -> bool:
        """Compare-and-swap a branch head; False when it no longer points at `old`."""
        ...

    def delete_ref(self, repo: Repo, kind: RefKind, name: str) -> None: ...

    # commits and trees
    def add_commit(self, repo: Repo, commit: Commit) -> None: ...
    def get_commit(self, repo: Repo, sha: str) -> Commit | None: ...
    def find_commits(self, repo: Repo, sha_prefix: str, limit: int) -> list[Commit]: ...
    def add_tree(self, sha: str, entries: list[TreeEntry]) -> None:
        """Store a tree object; storing the same sha twice is a no-op."""
        ...

    def get_tree(self, sha: str) -> list[TreeEntry] | None: ...

    # blobs known to the metadata (content address -> size)
    def add_blob(self, blob: BlobInfo, now: datetime) -> None: ...
    def get_blob(self, sha256: str) -> BlobInfo | None: ...

    # which uploaded objects a repository has proven to hold (upload or commit)
    def add_repo_object(self, repo_pk: int, sha256: str) -> None: ...
    def has_repo_object(self, repo_pk: int, sha256: str) -> bool: ...

    # Xet storage: xorbs, the chunk index, content stored as chunk ranges
    def add_xorb(self, xorb: StoredXorb, now: datetime) -> bool:
        """Record a xorb and index its chunks; False if it was already known."""
        ...

    def get_xorbs(self, xorb_hashes: Iterable[str]) -> dict[str, StoredXorb]: ...
    def find_chunks(self, chunk_hashes: Iterable[bytes]) -> dict[bytes, tuple[str, int]]:
        """For each known chunk hash: (xorb hash, chunk index)."""
        ...

    def add_xet_file(self, file: XetFile, now: datetime) -> None:
        """Record content as Xet-stored (converting a whole-blob record in place)."""
        ...

    def related_xorbs(self, xorb_hash: str, limit: int) -> list[str]:
        """Xorbs used by the same contents as this one (itself first): dedup neighbours."""
        ...

    def get_xet_file(self, sha256: str) -> XetFile | None: ...
    def find_xet_file(self, file_hash: str) -> XetFile | None: ...
    def xet_hashes(self, sha256s: Iterable[str]) -> dict[str, str]: ...


class MetadataStore(Protocol):
    def session(self, *, write: bool = False) -> AbstractContextManager[MetadataSession]:
        """A new transaction: committed when the block ends normally, rolled back otherwise.

        `write=True` declares up front that the transaction will write, so backends that lock
        (SQLite) take the write lock at the start instead of failing on upgrade.
        """
        ...

    def close(self) -> None: ...
