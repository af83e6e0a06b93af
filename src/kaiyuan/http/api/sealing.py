"""Sealed repositories: policy, sealed files, challenges, key release, audit, revocation.

- `GET|PUT /api/sealing/{kind}/{ns}/{name}`: the policy (PUT: namespace writers) and the
  sealed files of a revision.
- `POST .../challenge`: a single-use nonce for the caller's next key request.
- `POST .../keys`: data keys, each sealed (HPKE) to the caller's ephemeral X25519 key.
- `GET .../releases`: the audit log; `PUT|DELETE .../revocations/{subject}`: stop or resume
  releasing keys to a user or organisation.

Part of the native API, described at `/api/openapi.json`.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import Principal
from kaiyuan.core.sealing import SealingPolicy
from kaiyuan.http.api.schema import ERRORS, NAME, REPO_KIND, json_body, refuse_other_methods
from kaiyuan.http.context import caller, hub_of, read_model
from kaiyuan.services.distribution.key_release import MAX_FILES_PER_RELEASE, KeyRequest

router = APIRouter(prefix="/api", tags=["sealing"], responses=ERRORS)

_BASE = "/sealing/{kind}/{namespace}/{name}"
Kind = Annotated[str, Path(**REPO_KIND)]
Namespace = Annotated[str, Path(**NAME)]
Name = Annotated[str, Path(**NAME)]
Subject = Annotated[str, Path(**NAME)]
MAX_EVIDENCE_ENTRIES = 64


class Policy(BaseModel):
    patterns: list[str] = Field(description="File patterns (fnmatch) whose files are sealed.")
    attestation: Literal["none", "required"] = "none"
    allowed: list[str] = Field(
        default_factory=list,
        description="Users or organisations keys may go to; empty: anyone who may read the "
        "repository's files.",
    )
    updated_at: datetime | None = None
    updated_by: str = ""


_PATTERN = r"^[^\x00-\x1f]*[^\s\x00-\x1f][^\x00-\x1f]*$"  # printable, not only spaces
_ACCOUNT = NAME["json_schema_extra"]["pattern"]


class PolicyBody(BaseModel):
    patterns: list[Annotated[str, Field(min_length=1, max_length=200, pattern=_PATTERN)]] = Field(
        min_length=1, max_length=32
    )
    attestation: Literal["none", "required"] = "none"
    allowed: list[Annotated[str, Field(min_length=1, max_length=96, pattern=_ACCOUNT)]] = Field(
        default_factory=list, max_length=200
    )


class SealedFileInfo(BaseModel):
    path: str
    sha256: str = Field(description="Of the ciphertext: what the tree and downloads name.")
    file_id: str
    plaintext_size: int
    sealed_at: datetime


class Listing(BaseModel):
    id: str
    revision: str
    policy: Policy | None
    files: list[SealedFileInfo]


class ChallengeOut(BaseModel):
    nonce: str = Field(description="64 hex digits; use it once, before it expires.")
    expires_at: datetime


class KeyBody(BaseModel):
    public_key: str = Field(
        pattern=r"^[A-Za-z0-9+/]{43}=$",
        description="The caller's ephemeral X25519 public key, raw (32 bytes), base64.",
    )
    nonce: str = Field(pattern=r"^[0-9a-f]{64}$", description="From the challenge.")
    revision: str | None = Field(default=None, max_length=256)
    paths: list[
        Annotated[str, Field(max_length=1024, json_schema_extra={"format": "repo-path"})]
    ] = Field(default_factory=list, max_length=MAX_FILES_PER_RELEASE)
    evidence: dict[str, Any] | None = Field(
        default=None,
        max_length=MAX_EVIDENCE_ENTRIES,
        description="Attestation evidence (see docs/distribution.md).",
    )


class ReleasedKeyOut(BaseModel):
    path: str
    sha256: str
    file_id: str
    sealed_key: str = Field(description="HPKE (X25519, HKDF-SHA256, AES-256-GCM), base64.")


class KeysOut(BaseModel):
    revision: str
    keys: list[ReleasedKeyOut]
    suite: str = "HPKE-X25519-HKDF-SHA256-AES256GCM"
    info: str = Field(
        default="kaiyuan-key-release/v1|<file_id>|<nonce bytes>",
        description="The HPKE info each key is sealed under.",
    )
    attestation: dict[str, Any] | None = None


class Release(BaseModel):
    at: datetime
    user: str
    revision: str
    outcome: Literal["released", "refused"]
    reason: str
    paths: list[str]
    file_ids: list[str]
    address: str


class Revocation(BaseModel):
    subject: str
    revoked_at: datetime
    revoked_by: str


def _policy(found: SealingPolicy | None) -> Policy | None:
    if found is None:
        return None
    return Policy(
        patterns=list(found.patterns),
        attestation=found.attestation.value,
        allowed=list(found.allowed),
        updated_at=found.updated_at,
        updated_by=found.updated_by,
    )


@router.get(_BASE, response_model=Listing)
async def listing(
    request: Request,
    kind: Kind,
    namespace: Namespace,
    name: Name,
    revision: Annotated[str | None, Query(max_length=256)] = None,
) -> Listing:
    """The repository's sealing policy and the sealed files of a revision."""
    principal = await caller(request)
    repo_id = RepoId(namespace, name)
    found = await run_in_threadpool(
        hub_of(request).sealing.listing, principal, RepoKind.parse(kind), repo_id, revision
    )
    return Listing(
        id=str(repo_id),
        revision=found.commit,
        policy=_policy(found.policy),
        files=[
            SealedFileInfo(
                path=path,
                sha256=sealed.sha256,
                file_id=sealed.file_id,
                plaintext_size=sealed.plaintext_size,
                sealed_at=sealed.sealed_at,
            )
            for path, sealed in found.files
        ],
    )


@router.put(
    _BASE,
    response_model=Policy,
    openapi_extra=json_body(
        PolicyBody.model_json_schema(ref_template="#/components/schemas/{model}")
    ),
)
async def set_policy(request: Request, kind: Kind, namespace: Namespace, name: Name) -> Policy:
    """Seal files matching the patterns from the next commit on (namespace writers)."""
    principal = await caller(request)
    body = await read_model(request, PolicyBody)
    made = await run_in_threadpool(
        hub_of(request).sealing.set_policy,
        principal,
        RepoKind.parse(kind),
        RepoId(namespace, name),
        body.patterns,
        body.attestation,
        body.allowed,
    )
    policy = _policy(made)
    assert policy is not None  # noqa: S101 - a policy was just set
    return policy


@router.post(_BASE + "/challenge", response_model=ChallengeOut)
async def challenge(request: Request, kind: Kind, namespace: Namespace, name: Name) -> ChallengeOut:
    """A nonce for the caller's next key request (and its attestation evidence)."""
    principal = await caller(request)
    made = await run_in_threadpool(
        hub_of(request).key_release.challenge,
        principal,
        RepoKind.parse(kind),
        RepoId(namespace, name),
    )
    return ChallengeOut(nonce=made.nonce, expires_at=made.expires_at)


@router.post(
    _BASE + "/keys",
    response_model=KeysOut,
    openapi_extra=json_body(KeyBody.model_json_schema(ref_template="#/components/schemas/{model}")),
)
async def keys(request: Request, kind: Kind, namespace: Namespace, name: Name) -> KeysOut:
    """The data keys of a revision's sealed files, if the repository's policy allows."""
    principal = await caller(request)
    body = await read_model(request, KeyBody)
    try:
        public_key = base64.b64decode(body.public_key, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError("'public_key' must be base64") from None
    asked = KeyRequest(
        public_key=public_key,
        nonce=body.nonce,
        revision=body.revision,
        paths=tuple(body.paths),
        evidence=body.evidence,
    )
    address = request.client.host if request.client else ""
    released = await run_in_threadpool(
        hub_of(request).key_release.release,
        principal,
        RepoKind.parse(kind),
        RepoId(namespace, name),
        asked,
        address,
    )
    return KeysOut(
        revision=released.commit,
        keys=[
            ReleasedKeyOut(
                path=k.path,
                sha256=k.sha256,
                file_id=k.file_id,
                sealed_key=base64.b64encode(k.sealed_key).decode(),
            )
            for k in released.keys
        ],
        attestation=(
            {
                "verifier": released.attestation.verifier,
                "tee": released.attestation.tee,
                "measurement": released.attestation.measurement,
            }
            if released.attestation
            else None
        ),
    )


@router.get(_BASE + "/releases", response_model=list[Release])
async def releases(
    request: Request,
    kind: Kind,
    namespace: Namespace,
    name: Name,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Release]:
    """The key-release audit log, newest first (namespace writers)."""
    principal = await caller(request)
    found = await run_in_threadpool(
        hub_of(request).key_release.releases,
        principal,
        RepoKind.parse(kind),
        RepoId(namespace, name),
        limit,
    )
    return [
        Release(
            at=r.at,
            user=r.user,
            revision=r.revision,
            outcome=r.outcome.value,
            reason=r.reason,
            paths=list(r.paths),
            file_ids=list(r.file_ids),
            address=r.address,
        )
        for r in found
    ]


@router.get(_BASE + "/revocations", response_model=list[Revocation])
async def revocations(
    request: Request, kind: Kind, namespace: Namespace, name: Name
) -> list[Revocation]:
    """Users and organisations whose key requests are refused (namespace writers)."""
    principal = await caller(request)
    return await _revocations(request, principal, kind, RepoId(namespace, name))


async def _revocations(
    request: Request, principal: Principal, kind: str, repo_id: RepoId
) -> list[Revocation]:
    found = await run_in_threadpool(
        hub_of(request).key_release.revocations, principal, RepoKind.parse(kind), repo_id
    )
    return [Revocation(subject=s, revoked_at=at, revoked_by=by) for s, at, by in found]


@router.put(_BASE + "/revocations/{subject}", response_model=list[Revocation])
async def revoke(
    request: Request,
    kind: Kind,
    namespace: Namespace,
    name: Name,
    subject: Annotated[str, Path(**NAME)],
) -> list[Revocation]:
    """Refuse a user's or organisation's key requests from now on."""
    principal = await caller(request)
    hub, repo_kind, repo_id = hub_of(request), RepoKind.parse(kind), RepoId(namespace, name)
    await run_in_threadpool(hub.key_release.revoke, principal, repo_kind, repo_id, subject)
    return await _revocations(request, principal, kind, repo_id)


@router.delete(_BASE + "/revocations/{subject}", response_model=list[Revocation])
async def restore(
    request: Request,
    kind: Kind,
    namespace: Namespace,
    name: Name,
    subject: Annotated[str, Path(**NAME)],
) -> list[Revocation]:
    """Release keys to a revoked user or organisation again (if the policy allows)."""
    principal = await caller(request)
    hub, repo_kind, repo_id = hub_of(request), RepoKind.parse(kind), RepoId(namespace, name)
    await run_in_threadpool(hub.key_release.restore, principal, repo_kind, repo_id, subject)
    return await _revocations(request, principal, kind, repo_id)


refuse_other_methods(router, [_BASE], "GET, PUT")
refuse_other_methods(router, [_BASE + "/challenge", _BASE + "/keys"], "POST")
refuse_other_methods(router, [_BASE + "/releases", _BASE + "/revocations"])
refuse_other_methods(router, [_BASE + "/revocations/{subject}"], "PUT, DELETE")
