"""Key release for sealed repositories: challenges, policy checks, audit, revocation.

A caller gets a file's data key only through `release`, sealed (HPKE) to an ephemeral public
key of theirs, bound to a fresh single-use challenge nonce, and only when every check passes:
signed in, may read the repository's files (an accepted request for a gated repository), not
revoked, allowed by the policy and, where the policy asks, presenting attestation evidence a
configured verifier accepts. Every request that reaches a repository is audited, released or
refused, whatever fails.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from kaiyuan.core.errors import (
    AccessDeniedError,
    AuthenticationError,
    EntryNotFoundError,
    HubError,
    InvalidInputError,
)
from kaiyuan.core.ids import RepoId, RepoKind, validate_name, validate_path
from kaiyuan.core.models import FileEntry, Principal, Repo
from kaiyuan.core.ports import MetadataSession, MetadataStore
from kaiyuan.core.sealing import (
    Attestation,
    AttestationResult,
    AttestationVerifier,
    Challenge,
    KeyEncryptionKeys,
    KeyRelease,
    ReleaseOutcome,
    SealingPolicy,
)
from kaiyuan.services import access, revisions, trees
from kaiyuan.services.clock import Clock, utc_now
from kaiyuan.services.distribution.attestation import report_data
from kaiyuan.services.distribution.sealing import key_binding, seal_for

CHALLENGE_TTL = timedelta(minutes=5)
MAX_FILES_PER_RELEASE = 1000
MAX_AUDIT_PAGE = 1000
_PUBLIC_KEY_BYTES = 32
_NONCE = re.compile(r"[0-9a-f]{64}")
_ANONYMOUS = "(anonymous)"
_log = logging.getLogger(__name__)


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


class _RefusedError(Exception):
    """A refusal to audit before the domain error goes out."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class KeyReleaseService:
    def __init__(
        self,
        store: MetadataStore,
        cache: trees.TreeCache,
        keys: KeyEncryptionKeys,
        verifier: AttestationVerifier | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._cache = cache
        self._keys = keys
        self._verifier = verifier
        self._clock = clock

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
            error = refused.error
            if isinstance(error, HubError):
                reason = error.message[:500]
            else:  # a plug-in's failure: its text stays in the hub's log, not the tenant's
                _log.exception("key release for %s failed", repo.repo_id, exc_info=error)
                reason = f"internal error ({type(error).__name__}); see the hub's log"
            self._audit(repo, replace(audit, reason=reason))
            raise refused.error from refused.error.__cause__
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
        except HubError as exc:
            raise _RefusedError(exc) from None
        except Exception as exc:  # a verifier or KMS plug-in failing: audited, then a 500
            raise _RefusedError(exc) from exc

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
            known = session.sealed_files(wanted.values(), repo)
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
    ) -> list[tuple[str, datetime, str]]:
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            return session.revocations(repo)


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
