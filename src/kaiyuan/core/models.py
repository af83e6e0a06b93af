"""Domain records. Frozen dataclasses; storage and edges translate to and from them."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum

from kaiyuan.core.ids import RepoId, RepoKind


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"


class Gating(StrEnum):
    """How a gated repository grants access to its files: at once, or after review."""

    AUTO = "auto"
    MANUAL = "manual"


class AccessStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


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
    token_id: str = ""  # the token behind the call: what a rate limit counts

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
    gated: Gating | None = None  # None: files are for whoever may see the repository


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """A user's request for the files of a gated repository, and what became of it."""

    request_id: str
    user: str
    status: AccessStatus
    fields: dict[str, str]  # the answers to the repository's request form
    requested_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None  # the member who decided; None when granted automatically
    reason: str | None = None  # why it was rejected


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
    xet_hash: str | None = None  # set when the content is stored as Xet chunks


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


# --- Xet storage --------------------------------------------------------------------------------
class Codec(IntEnum):
    """How a span of chunks is stored."""

    RAW = 0  # the chunks' bytes
    XET = 1  # Xet chunk records (header + LZ4 / byte-grouped LZ4) as clients send them
    HUB = 2  # the hub's own records (header + byte-grouped zstd): smaller, decoded to serve


@dataclass(frozen=True, slots=True)
class XorbSpan:
    """Chunks from index `first` on (up to the next span) lie back to back in one blob."""

    first: int
    blob_sha256: str
    offset: int
    codec: Codec = Codec.RAW


@dataclass(frozen=True, slots=True)
class Piece:
    """Where some of a xorb's bytes are: `length` bytes at `offset` of a blob.

    For an encoded piece those bytes are whole chunk records; decoded, the wanted bytes start
    `skip` bytes in and run for `take` bytes. For a raw piece they are the wanted bytes.
    """

    blob_sha256: str
    offset: int
    length: int
    encoded: bool = False
    skip: int = 0
    take: int = 0


@dataclass(frozen=True, slots=True)
class StoredXorb:
    """A xorb the hub holds: its chunks' hashes and sizes, and where their bytes live.

    Hashes are raw 32-byte values; `xorb_hash` is its wire (hex) form. `chunk_ends[i]` is the
    end of chunk i in the xorb's uncompressed data and `stored_ends[i]` the end of what chunk i
    occupies in storage (its raw bytes, or its record when encoded). The bytes are in blobs
    ("packs"): the xorb's own pack for chunks new to the hub, others' packs for known chunks.
    """

    xorb_hash: str
    chunk_hashes: tuple[bytes, ...]
    chunk_ends: tuple[int, ...]
    stored_ends: tuple[int, ...]
    spans: tuple[XorbSpan, ...]
    pack_sha256: str | None  # the blob this xorb added, None if every chunk was known
    pack_bytes: int

    @property
    def raw_bytes(self) -> int:
        return self.chunk_ends[-1] if self.chunk_ends else 0

    def chunk_start(self, index: int) -> int:
        return self.chunk_ends[index - 1] if index else 0

    def stored_start(self, index: int) -> int:
        return self.stored_ends[index - 1] if index else 0

    def span_of(self, index: int) -> tuple[XorbSpan, int]:
        """The span holding chunk `index`, and the chunk's offset in that span's blob."""
        position = bisect_right([s.first for s in self.spans], index) - 1
        span = self.spans[position]
        return span, span.offset + self.stored_start(index) - self.stored_start(span.first)

    def served_sizes(self) -> list[int]:
        """Bytes each chunk takes when served in the xorb format (raw chunks get a header)."""
        sizes = [self.stored_ends[i] - self.stored_start(i) for i in range(len(self.chunk_ends))]
        for number, span in enumerate(self.spans):
            if span.codec is Codec.XET:
                continue  # records go out as stored
            stop = self.spans[number + 1].first if number + 1 < len(self.spans) else len(sizes)
            for i in range(span.first, stop):
                sizes[i] = CHUNK_HEADER_BYTES + self.chunk_ends[i] - self.chunk_start(i)
        return sizes

    def pieces(self, start: int, end: int) -> list[Piece]:
        """Where the xorb's uncompressed bytes [start, end) are stored."""
        found: list[Piece] = []
        for number, span in enumerate(self.spans):
            stop = self.spans[number + 1].first if number + 1 < len(self.spans) else None
            span_start = self.chunk_start(span.first)
            span_end = self.raw_bytes if stop is None else self.chunk_start(stop)
            lo, hi = max(start, span_start), min(end, span_end)
            if lo >= hi:
                continue
            if span.codec is Codec.RAW:
                found.append(Piece(span.blob_sha256, span.offset + lo - span_start, hi - lo))
                continue
            first = bisect_right(self.chunk_ends, lo)
            last = bisect_left(self.chunk_ends, hi)
            base = span.offset - self.stored_start(span.first)
            found.append(
                Piece(
                    span.blob_sha256,
                    base + self.stored_start(first),
                    self.stored_ends[last] - self.stored_start(first),
                    encoded=True,
                    skip=lo - self.chunk_start(first),
                    take=hi - lo,
                )
            )
        return found


CHUNK_HEADER_BYTES = 8


@dataclass(frozen=True, slots=True)
class XorbBrief:
    """What garbage collection needs to know of a xorb: the blobs it reads, its age."""

    xorb_hash: str
    pack_sha256: str | None
    blobs: frozenset[str]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class XetTerm:
    """Chunks [start, end) of one xorb, a contiguous piece of a file."""

    xorb_hash: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class XetFile:
    """File content stored as Xet chunks: the Xet file id, the sha256 clients know it by."""

    file_hash: str
    sha256: str
    size: int
    terms: tuple[XetTerm, ...]
