"""Domain records. Frozen dataclasses; storage and edges translate to and from them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from kaiyuan.core.ids import RepoId, RepoKind


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"


class RefKind(StrEnum):
    BRANCH = "branch"
    TAG = "tag"


@dataclass(frozen=True, slots=True)
class Account:
    """A namespace owner: a user, or an organisation (which has members)."""

    name: str
    is_org: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A stored token. Only the sha256 of the secret is kept."""

    token_id: str
    user: str
    scope: Scope
    secret_sha256: str
    display_name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user with the token's scope, or anonymous (user is None)."""

    user: str | None = None
    scope: Scope | None = None
    orgs: tuple[str, ...] = ()
    token_name: str = ""

    @property
    def is_anonymous(self) -> bool:
        return self.user is None


ANONYMOUS = Principal()


@dataclass(frozen=True, slots=True)
class Repo:
    pk: int
    kind: RepoKind
    repo_id: RepoId
    private: bool
    created_at: datetime
    updated_at: datetime
    default_branch: str = "main"


@dataclass(frozen=True, slots=True)
class Ref:
    kind: RefKind
    name: str
    target: str  # commit sha1


@dataclass(frozen=True, slots=True)
class Commit:
    sha: str
    tree: str
    parents: tuple[str, ...]
    title: str
    message: str
    author: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One item of a stored tree: a file (with its content digest) or a sub-folder."""

    name: str
    is_dir: bool
    oid: str  # git sha1 of the blob (pointer blob for LFS files) or of the sub-tree
    size: int = 0
    sha256: str | None = None  # content address of a file's bytes
    lfs: bool = False


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file at a revision, with everything needed to serve or describe it."""

    path: str
    oid: str
    size: int
    sha256: str
    lfs: bool


@dataclass(frozen=True, slots=True)
class FolderEntry:
    path: str
    oid: str


Entry = FileEntry | FolderEntry


@dataclass(frozen=True, slots=True)
class BlobInfo:
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class ResolvedRevision:
    """A revision name resolved to a commit in one repository."""

    repo: Repo
    requested: str
    commit: Commit
