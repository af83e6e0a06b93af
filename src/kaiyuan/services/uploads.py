"""LFS uploads: which objects must be sent, signed upload grants, receiving and checking bytes."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

from kaiyuan.core.errors import (
    AccessDeniedError,
    BlobNotFoundError,
    IntegrityError,
    InvalidInputError,
    TooLargeError,
)
from kaiyuan.core.ids import RepoId, RepoKind, is_sha256, validate_sha256
from kaiyuan.core.models import BlobInfo, Principal, Repo
from kaiyuan.core.ports import BlobStore, BlobWriter, MetadataStore
from kaiyuan.services import access
from kaiyuan.services.clock import Clock, utc_now
from kaiyuan.services.contents import ContentStore
from kaiyuan.services.xet.ingest import XetIngest

MAX_OBJECTS_PER_BATCH = 1000


@dataclass(frozen=True, slots=True)
class UploadLimits:
    max_file_bytes: int = 1 << 40
    multipart_threshold_bytes: int = 8 << 30
    multipart_part_bytes: int = 1 << 30
    grant_ttl_seconds: int = 24 * 3600


@dataclass(frozen=True, slots=True)
class UploadGrant:
    """Permission to upload one object to one repository, checked by signature, not by session."""

    repo_pk: int
    sha256: str
    size: int
    expires: int
    upload_id: str  # non-empty for multipart uploads
    signature: str = ""

    def payload(self) -> bytes:
        return f"{self.repo_pk}:{self.sha256}:{self.size}:{self.expires}:{self.upload_id}".encode()


@dataclass(frozen=True, slots=True)
class ObjectPlan:
    """The answer for one object of a batch: nothing to do, an upload grant, or an error."""

    sha256: str
    size: int
    grant: UploadGrant | None = None
    part_size: int = 0
    part_count: int = 0
    error: str | None = None


class UploadService:
    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobStore,
        contents: ContentStore,
        ingest: XetIngest,
        secret: bytes,
        limits: UploadLimits,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._contents = contents
        self._ingest = ingest
        self._secret = secret
        self._limits = limits
        self._clock = clock

    def plan(
        self,
        principal: Principal,
        kind: RepoKind,
        repo_id: RepoId,
        objects: list[tuple[str, int]],
    ) -> list[ObjectPlan]:
        """For each (sha256, size): skip it if the repo holds it, else grant an upload."""
        if len(objects) > MAX_OBJECTS_PER_BATCH:
            raise InvalidInputError(f"at most {MAX_OBJECTS_PER_BATCH} objects per batch")
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            held = {
                sha
                for sha, _ in objects
                if _is_digest(sha) and session.has_repo_object(repo.pk, sha)
            }
        return [self._plan_one(repo, sha, size, sha in held) for sha, size in objects]

    def _plan_one(self, repo: Repo, sha256: str, size: int, held: bool) -> ObjectPlan:
        if not _is_digest(sha256):
            return ObjectPlan(str(sha256)[:64], 0, error="oid must be a sha256 digest (64 hex)")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return ObjectPlan(sha256, 0, error="size must be a non-negative integer")
        if size > self._limits.max_file_bytes:
            return ObjectPlan(
                sha256, size, error=f"larger than the {self._limits.max_file_bytes}-byte file limit"
            )
        if held and self._holds(sha256, size):
            return ObjectPlan(sha256, size)
        expires = int(time.time()) + self._limits.grant_ttl_seconds
        if size >= self._limits.multipart_threshold_bytes:
            part = self._limits.multipart_part_bytes
            grant = self._sign(UploadGrant(repo.pk, sha256, size, expires, secrets.token_hex(16)))
            return ObjectPlan(sha256, size, grant, part, math.ceil(size / part))
        return ObjectPlan(sha256, size, self._sign(UploadGrant(repo.pk, sha256, size, expires, "")))

    def _holds(self, sha256: str, size: int) -> bool:
        try:
            return self._contents.stat(sha256).size == size
        except BlobNotFoundError:
            return False

    def _sign(self, grant: UploadGrant) -> UploadGrant:
        signature = hmac.new(self._secret, grant.payload(), hashlib.sha256).hexdigest()
        return UploadGrant(
            grant.repo_pk, grant.sha256, grant.size, grant.expires, grant.upload_id, signature
        )

    def check_grant(self, grant: UploadGrant) -> None:
        """Raise AccessDenied unless the grant was issued here and has not expired."""
        expected = self._sign(grant).signature
        if not hmac.compare_digest(expected, grant.signature):
            raise AccessDeniedError("upload link signature is invalid")
        if grant.expires < time.time():
            raise AccessDeniedError("upload link has expired; ask for a new one")

    def receiver(self, grant: UploadGrant) -> SizedWriter:
        """A writer for the whole object; `finish` checks digest and size and records it."""
        self.check_grant(grant)
        if grant.upload_id:
            raise InvalidInputError("this object is uploaded in parts")
        return SizedWriter(self._blobs.writer(), grant.size)

    def part_receiver(self, grant: UploadGrant, part_number: int, part_size: int) -> SizedWriter:
        self.check_grant(grant)
        count = math.ceil(grant.size / part_size) if part_size else 0
        if not grant.upload_id or not 1 <= part_number <= count:
            raise InvalidInputError(f"part number must be between 1 and {count}")
        expected = min(part_size, grant.size - (part_number - 1) * part_size)
        return SizedWriter(self._blobs.write_part(grant.upload_id, part_number), expected)

    def finish(self, grant: UploadGrant, writer: SizedWriter) -> BlobInfo:
        info = writer.commit(grant.sha256)
        self._record(grant, info)
        return info

    def finish_part(self, writer: SizedWriter) -> str:
        """Store a part; its sha256 is the part's ETag."""
        return writer.commit(None).sha256

    def complete(self, grant: UploadGrant, part_count: int) -> BlobInfo:
        self.check_grant(grant)
        info = self._blobs.complete_parts(grant.upload_id, part_count, grant.sha256, grant.size)
        self._record(grant, info)
        return info

    def verify(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, sha256: str, size: int
    ) -> None:
        """Confirm the object arrived whole for this repository (the LFS verify action)."""
        validate_sha256(sha256)
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            held = session.has_repo_object(repo.pk, sha256)
        if not held or not self._holds(sha256, size):
            raise IntegrityError(f"object {sha256} of {size} bytes was not received")

    def adopt(self, repo: Repo, stream: IO[bytes], max_bytes: int | None = None) -> BlobInfo:
        """Store a stream the hub received or made itself as an upload to `repo`, hashed."""
        limit = self._limits.max_file_bytes if max_bytes is None else max_bytes
        writer = self._blobs.writer()
        try:
            _write_within(writer, iter(lambda: stream.read(_ADOPT_CHUNK), b""), limit)
            info = writer.commit()
        except BaseException:
            writer.abort()
            raise
        grant = UploadGrant(repo.pk, info.sha256, info.size, 0, "")
        self._record(grant, info)
        return info

    def _record(self, grant: UploadGrant, info: BlobInfo) -> None:
        # Chunked into Xet storage first: until then the whole blob stays the stored form, and
        # a failure here leaves an upload the client can simply send again.
        self._ingest.convert(info.sha256)
        with self._store.session(write=True) as session:
            session.add_blob(info, self._clock())
            session.add_repo_object(grant.repo_pk, info.sha256)


_ADOPT_CHUNK = 4 * 1024 * 1024


class SizedWriter:
    """A blob writer that refuses more bytes than announced and checks the total at the end."""

    def __init__(self, inner: BlobWriter, expected_size: int) -> None:
        self._inner = inner
        self.expected_size = expected_size

    def write(self, data: bytes) -> None:
        if self._inner.size + len(data) > self.expected_size:
            self._inner.abort()
            raise TooLargeError(f"more than the announced {self.expected_size} bytes were sent")
        self._inner.write(data)

    def commit(self, expected_sha256: str | None) -> BlobInfo:
        return self._inner.commit(expected_sha256, self.expected_size)

    def abort(self) -> None:
        self._inner.abort()


def _is_digest(value: object) -> bool:
    return isinstance(value, str) and is_sha256(value)


def _write_within(writer: BlobWriter, chunks: Iterable[bytes], limit: int) -> None:
    for chunk in chunks:
        writer.write(chunk)
        if writer.size > limit:
            raise TooLargeError(f"larger than the {limit}-byte file limit")
