"""Sealed repositories: seal files as they are committed, and release their keys by policy.

A repository's sealing policy names file patterns. A commit that puts a matching file stores
it sealed: the plaintext (already scanned) is encrypted into a new blob, the commit names the
ciphertext instead, the data key is kept only wrapped by the hub's KEK, and the plaintext
upload is forgotten and deleted. Downloads then serve the ciphertext through the normal
protocol to anyone who may read the repository; the key goes only through `release`, sealed to
the caller's ephemeral key, when the caller is signed in, may read the files (an accepted
request for a gated repository), is not revoked, is allowed by the policy and, where the policy
asks, presents attestation evidence a configured verifier accepts. Each request is audited.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from kaiyuan.core.errors import (
    AccessDeniedError,
    AuthenticationError,
    BlobNotFoundError,
    EntryNotFoundError,
    HubError,
    InvalidInputError,
    NotFoundError,
)
from kaiyuan.core.ids import RepoId, RepoKind, validate_name, validate_path
from kaiyuan.core.models import BlobInfo, FileEntry, Principal, Repo
from kaiyuan.core.ports import BlobStore, MetadataSession, MetadataStore
from kaiyuan.core.scanning import FileScan
from kaiyuan.core.sealing import (
    Attestation,
    AttestationResult,
    AttestationVerifier,
    Challenge,
    KeyEncryptionKeys,
    KeyRelease,
    ReleaseOutcome,
    SealedFile,
    SealingPolicy,
    checked_policy,
)
from kaiyuan.services import access, revisions, trees
from kaiyuan.services.clock import Clock, utc_now
from kaiyuan.services.commits import Operation, PutLfsFile, SealedPuts
from kaiyuan.services.contents import ContentStore
from kaiyuan.services.distribution.attestation import report_data
from kaiyuan.services.distribution.sealing import (
    SealedReader,
    key_binding,
    new_data_key,
    seal,
    seal_for,
)

CHALLENGE_TTL = timedelta(minutes=5)
MAX_FILES_PER_RELEASE = 1000
MAX_AUDIT_PAGE = 1000
_PUBLIC_KEY_BYTES = 32
_NONCE = re.compile(r"[0-9a-f]{64}")
_ANONYMOUS = "(anonymous)"
_SEALED_FINDING = "sealed: the verdict on its plaintext, scanned before sealing"


@dataclass(frozen=True, slots=True)
class KeyRequest:
    public_key: bytes  # raw X25519, 32 bytes: keys come back sealed to it
    nonce: str  # from `challenge`, hex
    revision: str | None = None
    paths: tuple[str, ...] = ()  # empty: every sealed file of the revision
    evidence: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ReleasedKey:
    path: str
    sha256: str
    file_id: str
    sealed_key: bytes  # HPKE: enc ‖ ciphertext, for the request's public key


@dataclass(frozen=True, slots=True)
class ReleasedKeys:
    commit: str
    keys: list[ReleasedKey]
    attestation: AttestationResult | None = None


@dataclass(frozen=True, slots=True)
class SealedListing:
    commit: str
    policy: SealingPolicy | None
    files: list[tuple[str, SealedFile]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rotation:
    kek_id: str
    rewrapped: int
    retired: list[str]


class _RefusedError(Exception):
    """A refusal to audit before the domain error goes out."""

    def __init__(self, error: HubError) -> None:
        self.error = error


class SealingService:
    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobStore,
        contents: ContentStore,
        cache: trees.TreeCache,
        keys: KeyEncryptionKeys,
        verifier: AttestationVerifier | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._contents = contents
        self._cache = cache
        self._keys = keys
        self._verifier = verifier
        self._clock = clock

    # --- policy -----------------------------------------------------------------------------
    def policy(self, principal: Principal, kind: RepoKind, repo_id: RepoId) -> SealingPolicy | None:
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            return session.sealing_policy(repo)

    def set_policy(
        self,
        principal: Principal,
        kind: RepoKind,
        repo_id: RepoId,
        patterns: object,
        attestation: object = None,
        allowed: object = None,
    ) -> SealingPolicy:
        """Seal files matching `patterns` from the next commit on.

        Files committed before stay as they are. A policy cannot be removed: sealed files stay
        sealed.
        """
        parts = checked_policy(patterns, attestation, allowed)
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            policy = SealingPolicy(
                *parts, updated_at=self._clock(), updated_by=principal.user or ""
            )
            session.set_sealing_policy(repo, policy)
            return policy

    # --- sealing as files are committed -------------------------------------------------------
    def seal_puts(
        self,
        kind: RepoKind,
        repo_id: RepoId,
        operations: list[Operation],
        blobs: dict[int, BlobInfo],
    ) -> SealedPuts | None:
        """Seal the put operations the repository's policy names (None: nothing to seal).

        Runs after the scanner has judged the plaintext and before the commit's transaction;
        the ciphertext blobs are written here, recorded by `record` inside the transaction.
        """
        with self._store.session() as session:
            repo = session.get_repo(kind, repo_id)
            policy = session.sealing_policy(repo) if repo is not None else None
            already = session.sealed_files(b.sha256 for b in blobs.values())
        if policy is None:
            return None
        ops, sealed_blobs = list(operations), dict(blobs)
        records: list[SealedFile] = []
        plaintexts: set[str] = set()
        for index, blob in blobs.items():
            path = ops[index].path
            if not policy.seals(path) or blob.sha256 in already:
                continue  # not sealed, or the ciphertext itself committed again (a copy)
            record, info = self._seal_one(path, blob)
            records.append(record)
            plaintexts.add(blob.sha256)
            ops[index] = PutLfsFile(path, info.sha256, info.size)
            sealed_blobs[index] = info
        if not records:
            return None
        return SealedPuts(ops, sealed_blobs, records, frozenset(plaintexts))

    def record(self, session: MetadataSession, repo: Repo, sealed: SealedPuts) -> None:
        """Inside the commit's transaction: keep the wrapped keys, hold the ciphertexts."""
        verdicts = session.scans(r.plaintext_sha256 for r in sealed.records)
        for record in sealed.records:
            session.add_sealed_file(record)
            session.add_repo_object(repo.pk, record.sha256)
            found = verdicts.get(record.plaintext_sha256)
            if found is not None:
                # The scanner cannot see inside a sealed file: it carries the plaintext's verdict.
                session.save_scan(
                    FileScan(
                        record.sha256,
                        found.status,
                        found.format,
                        (_SEALED_FINDING, *found.findings),
                        found.imports,
                        found.scanner,
                        record.sealed_at,
                    )
                )

    def forget_plaintexts(self, kind: RepoKind, repo_id: RepoId, sealed: SealedPuts) -> None:
        """After the commit: drop the plaintext uploads no tree names and delete their bytes.

        A plaintext stored as Xet chunks loses its record here; the chunks go at the next
        garbage collection (`kaiyuan admin gc`).
        """
        doomed: list[str] = []
        with self._store.session(write=True) as session:
            repo = session.get_repo(kind, repo_id)
            if repo is None:
                return
            session.lock_for_collection()
            for sha256 in sorted(sealed.plaintexts):
                if session.forget_upload(repo, sha256):
                    session.delete_contents({sha256})
                    doomed.append(sha256)
        for sha256 in doomed:
            with contextlib.suppress(BlobNotFoundError):
                self._blobs.delete(sha256)

    def _seal_one(self, path: str, blob: BlobInfo) -> tuple[SealedFile, BlobInfo]:
        data_key = new_data_key()
        writer = self._blobs.writer()
        try:
            with self._contents.reader(blob.sha256, blob.size) as source:
                header = seal(source, blob.size, writer, data_key, path)
            info = writer.commit(None, header.sealed_size)
        finally:
            writer.abort()
        wrapped = self._keys.wrap(data_key, key_binding(header.file_id, path))
        record = SealedFile(
            info.sha256, header.file_id, path, blob.sha256, blob.size, wrapped, self._clock()
        )
        return record, info

    def unseal(self, sha256: str) -> SealedReader | None:
        """The plaintext of a sealed content, or None when it is not sealed.

        For the hub's own readers (the scanner, the fingerprint worker), in memory.
        """
        with self._store.session() as session:
            found = session.sealed_files([sha256]).get(sha256)
        if found is None:
            return None
        data_key = self._keys.unwrap(found.key, key_binding(found.file_id, found.path))
        size = self._contents.stat(sha256).size
        contents = self._contents

        def read_at(offset: int, length: int) -> bytes:
            return b"".join(contents.open(sha256, offset, offset + length))

        return SealedReader(read_at, size, data_key, found.path)

    # --- what is sealed ---------------------------------------------------------------------
    def listing(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, revision: str | None
    ) -> SealedListing:
        """The sealed files of a revision (path order) and the repository's policy."""
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            commit = revisions.resolve(session, repo, revision or repo.default_branch)
            files = trees.flatten(session, self._cache, commit.tree)
            known = session.sealed_files(e.sha256 for e in files.values() if e.lfs)
            found = [
                (path, known[entry.sha256])
                for path, entry in sorted(files.items())
                if entry.sha256 in known
            ]
            return SealedListing(commit.sha, session.sealing_policy(repo), found)

    # --- key release ------------------------------------------------------------------------
    def challenge(self, principal: Principal, kind: RepoKind, repo_id: RepoId) -> Challenge:
        """A fresh single-use nonce for the caller's next key request on this repository."""
        if principal.user is None:
            raise AuthenticationError("keys go only to signed-in callers: send a token")
        now = self._clock()
        made = Challenge(secrets.token_hex(32), principal.user, now + CHALLENGE_TTL)
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            if session.sealing_policy(repo) is None:
                raise InvalidInputError(f"{repo_id} is not a sealed repository")
            session.add_challenge(repo, made, now)
        return made

    def release(
        self,
        principal: Principal,
        kind: RepoKind,
        repo_id: RepoId,
        request: KeyRequest,
        address: str = "",
    ) -> ReleasedKeys:
        """The data keys of a revision's sealed files, each sealed to the request's public key.

        Refused (and audited) unless every policy check passes; see the module docstring.
        """
        public_key = _public_key(request.public_key)
        if not _NONCE.fullmatch(request.nonce):
            raise InvalidInputError("'nonce' must be the challenge's 64 hex digits")
        if len(request.paths) > MAX_FILES_PER_RELEASE:
            raise InvalidInputError(f"at most {MAX_FILES_PER_RELEASE} files per request")
        for path in request.paths:
            validate_path(path)
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
        audit = KeyRelease(
            at=self._clock(),
            user=principal.user or _ANONYMOUS,
            token_id=principal.token_id,
            revision=(request.revision or repo.default_branch)[:255],
            outcome=ReleaseOutcome.REFUSED,
            reason="",
            paths=request.paths[:50],
            address=address[:64],
        )
        try:
            released = self._decide(principal, repo, request, public_key)
        except _RefusedError as refused:
            self._audit(repo, replace(audit, reason=str(refused.error)[:500]))
            raise refused.error from None
        self._audit(
            repo,
            replace(
                audit,
                outcome=ReleaseOutcome.RELEASED,
                revision=released.commit,
                reason=released.attestation.summary() if released.attestation else "",
                paths=tuple(k.path for k in released.keys),
                file_ids=tuple(k.file_id for k in released.keys),
            ),
        )
        return released

    def _decide(
        self, principal: Principal, repo: Repo, request: KeyRequest, public_key: X25519PublicKey
    ) -> ReleasedKeys:
        try:
            return self._released(principal, repo, request, public_key)
        except (AccessDeniedError, AuthenticationError, InvalidInputError, NotFoundError) as exc:
            raise _RefusedError(exc) from None

    def _released(
        self, principal: Principal, repo: Repo, request: KeyRequest, public_key: X25519PublicKey
    ) -> ReleasedKeys:
        if principal.user is None:
            raise AuthenticationError("keys go only to signed-in callers: send a token")
        now = self._clock()
        with self._store.session(write=True) as session:
            policy = session.sealing_policy(repo)
            if policy is None:
                raise InvalidInputError(f"{repo.repo_id} is not a sealed repository")
            # The challenge is used up whatever happens next: a refused request cannot be
            # replayed with better evidence, it starts again.
            if not session.take_challenge(repo, request.nonce, principal.user, now):
                raise AccessDeniedError(
                    "unknown, used or expired challenge nonce: ask for a new challenge"
                )
        with self._store.session() as session:
            _authorise(session, principal, repo, policy)
            attested = self._attest(policy, request)
            commit = revisions.resolve(session, repo, request.revision or repo.default_branch)
            wanted = _wanted(trees.flatten(session, self._cache, commit.tree), request, commit.sha)
            known = session.sealed_files(wanted.values())
        missing = [p for p in request.paths if wanted[p] not in known]
        if missing:
            raise InvalidInputError(f"{missing[0]!r} is not a sealed file at {commit.sha}")
        chosen = [(path, known[sha]) for path, sha in wanted.items() if sha in known]
        if len(chosen) > MAX_FILES_PER_RELEASE:
            raise InvalidInputError(
                f"{len(chosen)} sealed files: ask for at most {MAX_FILES_PER_RELEASE} by path"
            )
        nonce = bytes.fromhex(request.nonce)
        keys = []
        for path, sealed in chosen:
            data_key = self._keys.unwrap(sealed.key, key_binding(sealed.file_id, sealed.path))
            sealed_key = seal_for(public_key, data_key, sealed.file_id, nonce)
            keys.append(ReleasedKey(path, sealed.sha256, sealed.file_id, sealed_key))
        return ReleasedKeys(commit.sha, keys, attested)

    def _attest(self, policy: SealingPolicy, request: KeyRequest) -> AttestationResult | None:
        if request.evidence is None:
            if policy.attestation is Attestation.REQUIRED:
                raise AccessDeniedError(
                    "this repository releases keys only to attested runtimes: send evidence"
                )
            return None
        if self._verifier is None:
            raise AccessDeniedError("this hub has no attestation verifier configured")
        expected = report_data(bytes.fromhex(request.nonce), request.public_key)
        return self._verifier.verify(request.evidence, expected)

    def _audit(self, repo: Repo, release: KeyRelease) -> None:
        with self._store.session(write=True) as session:
            session.add_key_release(repo, release)

    # --- audit and revocation -----------------------------------------------------------------
    def releases(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, limit: int = 100
    ) -> list[KeyRelease]:
        """The audit log, newest first: for those who may write to the repository."""
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            return session.key_releases(repo, max(1, min(limit, MAX_AUDIT_PAGE)))

    def revoke(self, principal: Principal, kind: RepoKind, repo_id: RepoId, subject: str) -> bool:
        """Refuse a user's or organisation's key requests from now on.

        Keys already released stay with whoever holds them: only future loads are stopped.
        """
        validate_name(subject, "user or organisation")
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            return session.revoke_keys(repo, subject, self._clock(), principal.user or "")

    def restore(self, principal: Principal, kind: RepoKind, repo_id: RepoId, subject: str) -> bool:
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            return session.restore_keys(repo, subject)

    def revocations(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId
    ) -> list[tuple[str, Any, str]]:
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            return session.revocations(repo)

    # --- key rotation -----------------------------------------------------------------------
    def rotate(self) -> Rotation:
        """A new current KEK; every kept key rewrapped with it; KEKs no key uses retired."""
        kek_id = self._keys.rotate()
        with self._store.session() as session:
            stale = session.sealed_files_wrapped_by(session.kek_ids_in_use() - {kek_id})
        rewrapped = 0
        for record in stale:
            binding = key_binding(record.file_id, record.path)
            fresh = self._keys.wrap(self._keys.unwrap(record.key, binding), binding)
            with self._store.session(write=True) as session:
                rewrapped += session.rewrap_sealed_file(record.sha256, record.key, fresh)
        with self._store.session() as session:
            in_use = session.kek_ids_in_use()
        return Rotation(kek_id, rewrapped, self._keys.retire(in_use))


def _authorise(
    session: MetadataSession, principal: Principal, repo: Repo, policy: SealingPolicy
) -> None:
    """The caller may read the files, is not revoked, and is one the policy releases to."""
    access.require_files(session, principal, repo)
    subjects = {principal.user or "", *principal.orgs}
    revoked = sorted(s for s, _, _ in session.revocations(repo) if s in subjects)
    if revoked:
        raise AccessDeniedError(f"key release for {revoked[0]!r} was revoked")
    if policy.allowed and not subjects & set(policy.allowed):
        raise AccessDeniedError(
            f"{principal.user!r} is not among those this repository releases keys to"
        )


def _wanted(files: Mapping[str, FileEntry], request: KeyRequest, commit: str) -> dict[str, str]:
    """The requested paths (all files when none) and their contents' sha256."""
    if not request.paths:
        return {path: entry.sha256 for path, entry in sorted(files.items()) if entry.lfs}
    wanted = {}
    for path in request.paths:
        entry = files.get(path)
        if entry is None:
            raise EntryNotFoundError(f"{path!r} not found at {commit}", commit)
        wanted[path] = entry.sha256
    return wanted


def _public_key(raw: bytes) -> X25519PublicKey:
    if len(raw) != _PUBLIC_KEY_BYTES:
        raise InvalidInputError("'public_key' must be a raw X25519 public key (32 bytes)")
    return X25519PublicKey.from_public_bytes(raw)
