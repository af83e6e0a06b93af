"""Sealed repositories' records: what is sealed, the keys kept for it, and who got them.

A sealed file is stored and served only as ciphertext (a Kaiyuan sealed container); its data
key is kept wrapped by a key-encryption key (KEK) that never leaves the hub's key ring or KMS,
and goes to a caller only sealed to the caller's ephemeral public key, when the repository's
policy allows it. Every release and every refusal is recorded.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from kaiyuan.core.errors import InvalidInputError

MAX_PATTERNS = 32
MAX_PATTERN_LENGTH = 200
MAX_PRINCIPALS = 200
MAX_NAME_LENGTH = 96
_CONTROL = 32  # characters below this are control characters
# Files the hub itself must read in the clear: the card and the attributes file.
NEVER_SEALED = frozenset({"README.md", ".gitattributes"})


class Attestation(enum.Enum):
    """What a repository asks of the runtime a key goes to."""

    NONE = "none"  # an authorised caller suffices
    REQUIRED = "required"  # plus evidence a configured verifier accepts


@dataclass(frozen=True, slots=True)
class SealingPolicy:
    """Which files of a repository are sealed and who may have their keys.

    `allowed`: users or organisations that may receive keys (empty: anyone who may read the
    repository's files, which for a gated repository means an accepted access request).
    """

    patterns: tuple[str, ...]
    attestation: Attestation = Attestation.NONE
    allowed: tuple[str, ...] = ()
    updated_at: datetime | None = None
    updated_by: str = ""

    def seals(self, path: str) -> bool:
        if path in NEVER_SEALED:
            return False
        name = path.rsplit("/", 1)[-1]
        return any(
            fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(name, pattern)
            for pattern in self.patterns
        )


def checked_policy(
    patterns: object, attestation: object, allowed: object
) -> tuple[tuple[str, ...], Attestation, tuple[str, ...]]:
    """A policy's parts from outside input, or InvalidInput saying what is wrong."""
    if not isinstance(patterns, list) or not patterns or len(patterns) > MAX_PATTERNS:
        raise InvalidInputError(f"'patterns' must be a list of 1 to {MAX_PATTERNS} file patterns")
    for pattern in patterns:
        if (
            not isinstance(pattern, str)
            or not pattern.strip()
            or len(pattern) > MAX_PATTERN_LENGTH
            or any(ord(c) < _CONTROL for c in pattern)
        ):
            raise InvalidInputError(f"bad file pattern {str(pattern)[:80]!r}")
    try:
        level = Attestation(attestation if attestation is not None else "none")
    except ValueError:
        raise InvalidInputError("'attestation' must be 'none' or 'required'") from None
    if allowed is None:
        allowed = []
    if not isinstance(allowed, list) or len(allowed) > MAX_PRINCIPALS:
        raise InvalidInputError(f"'allowed' must be a list of at most {MAX_PRINCIPALS} names")
    for name in allowed:
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidInputError("each name in 'allowed' must be a user or organisation")
    return tuple(dict.fromkeys(patterns)), level, tuple(dict.fromkeys(allowed))


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key encrypted under one KEK of the key ring (or KMS)."""

    kek_id: str
    blob: bytes


@dataclass(frozen=True, slots=True)
class SealedFile:
    """One sealed content (named by the ciphertext's sha256) and its kept key."""

    sha256: str  # of the ciphertext: what trees and downloads name
    repo_pk: int  # the repository that sealed it: only its policy releases the key
    file_id: str  # from the container header
    path: str  # the path it was sealed for (bound into the header and the wrapped key)
    plaintext_sha256: str
    plaintext_size: int
    key: WrappedKey
    sealed_at: datetime


class ReleaseOutcome(enum.Enum):
    RELEASED = "released"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class KeyRelease:
    """An audit record: one caller asking for keys, and what the hub did."""

    at: datetime
    user: str
    token_id: str
    revision: str
    outcome: ReleaseOutcome
    reason: str  # why refused; the verifier's summary when released with attestation
    paths: tuple[str, ...] = ()
    file_ids: tuple[str, ...] = ()
    address: str = ""


@dataclass(frozen=True, slots=True)
class Challenge:
    """A nonce a caller must bind its key request (and evidence) to; single use."""

    nonce: str  # hex
    user: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AttestationResult:
    """What a verifier established about the runtime that asked."""

    verifier: str
    tee: str
    measurement: str
    claims: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return f"{self.verifier}: tee={self.tee} measurement={self.measurement[:16]}"


class KeyEncryptionKeys(Protocol):
    """The hub's key-encryption keys: a local key ring by default, a KMS where configured.

    `binding` is authenticated with the wrapped key (the file it belongs to), so a wrapped key
    moved to another file's record does not unwrap.
    """

    def wrap(self, data_key: bytes, binding: bytes) -> WrappedKey: ...

    def unwrap(self, key: WrappedKey, binding: bytes) -> bytes:
        """The data key; IntegrityError if it does not open (wrong KEK, moved, tampered)."""
        ...

    def current(self) -> str:
        """The id of the KEK new keys are wrapped with."""
        ...

    def rotate(self) -> str:
        """Make a new KEK current; its id. Old KEKs stay until nothing is wrapped by them."""
        ...

    def retire(self, in_use: set[str], after: timedelta) -> list[str]:
        """Destroy KEKs not current for `after` and not in `in_use`; their ids."""
        ...


class AttestationVerifier(Protocol):
    """Checks a runtime's evidence before a key goes to it (a TEE verifier plugs in here).

    `report_data` is what the evidence must carry to be fresh and bound to this request: the
    SHA-256 of the challenge nonce and the requester's ephemeral public key (see
    docs/distribution.md). Raise AccessDeniedError with the reason when it is not acceptable.
    """

    name: str

    def verify(self, evidence: Mapping[str, Any], report_data: bytes) -> AttestationResult: ...
