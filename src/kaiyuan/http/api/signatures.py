"""Signed revisions: `GET /api/signatures/{kind}/{ns}/{name}` and `GET /api/signing/key`.

The first is the hub's OpenSSF model signing (OMS) bundle for a revision, with the check of the
publisher's own signature (`model.sig`) when the revision has one; the second the hub's public
key, which verifiers should pin (`kaiyuan verify --key`). `/api/signing/keys/{namespace}` lists
the keys a namespace registered for its publishers (POST adds one, DELETE removes one; for the
namespace's writers). Part of the native API, described at `/api/openapi.json`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from kaiyuan.core.errors import GatedRepoError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.http.api.schema import ERRORS, NAME, REPO_KIND, json_body, refuse_other_methods
from kaiyuan.http.context import caller, hub_of, read_model

router = APIRouter(prefix="/api", tags=["signing"], responses=ERRORS)


class Signature(BaseModel):
    id: str
    revision: str = Field(description="The commit the bundle signs.")
    signer: str = Field(description="Who signed: `hub`.")
    key_id: str = Field(description="SHA-256 of the signer's public key PEM (the OMS key hint).")
    created_at: datetime
    bundle: dict[str, Any] = Field(
        description="The OMS (Sigstore) bundle, as `model.sig` holds it."
    )
    publisher: PublisherCheck | None = Field(
        default=None, description="The publisher's own signature, checked now."
    )


class PublisherCheck(BaseModel):
    path: str = Field(description="The publisher's bundle in the revision (`model.sig`).")
    status: Literal["verified", "mismatch", "unknown-key", "unreadable"]
    key_id: str = Field(description="The registered key that made it (empty if none).")
    detail: str
    subject: str = Field(description="The model name the bundle names (unverified).")


class SigningKey(BaseModel):
    key_id: str
    public_key: str = Field(description="PEM (P-256, SubjectPublicKeyInfo).")


@router.get("/signatures/{kind}/{namespace}/{name}", response_model=Signature)
async def signature(
    request: Request,
    kind: Annotated[str, Path(**REPO_KIND)],
    namespace: Annotated[str, Path(**NAME)],
    name: Annotated[str, Path(**NAME)],
    revision: Annotated[str | None, Query(max_length=256)] = None,
) -> Signature:
    """The hub's signature of a revision (default: the default branch)."""
    principal = await caller(request)
    repo_id, hub, repo_kind = RepoId(namespace, name), hub_of(request), RepoKind.parse(kind)
    found = await run_in_threadpool(hub.signing.signature, principal, repo_kind, repo_id, revision)
    try:
        own = await run_in_threadpool(
            hub.publishers.check, principal, repo_kind, repo_id, found.commit
        )
    except GatedRepoError:
        own = None  # the publisher's model.sig is one of the gated files
    return Signature(
        id=str(repo_id),
        revision=found.commit,
        signer=found.signer,
        key_id=found.key_id,
        created_at=found.created_at,
        bundle=json.loads(found.bundle),
        publisher=PublisherCheck(
            path=own.path,
            status=own.status.value,
            key_id=own.key_id,
            detail=own.detail,
            subject=own.subject,
        )
        if own is not None
        else None,
    )


@router.get("/signing/key", response_model=SigningKey)
async def signing_key(request: Request) -> SigningKey:
    """The hub's public signing key."""
    key = hub_of(request).signing.key
    return SigningKey(key_id=key.key_id, public_key=key.public_pem.decode("ascii"))


class PublisherKeyOut(BaseModel):
    key_id: str
    public_key: str = Field(description="PEM (SubjectPublicKeyInfo).")
    added_by: str
    added_at: datetime


class PublisherKeyBody(BaseModel):
    public_key: str = Field(
        max_length=4096, description="PEM of an EC public key (P-256, P-384 or P-521)."
    )


def _keys(request: Request, namespace: str) -> list[PublisherKeyOut]:
    return [
        PublisherKeyOut(
            key_id=k.key_id,
            public_key=k.public_pem.decode("ascii"),
            added_by=k.added_by,
            added_at=k.added_at,
        )
        for k in hub_of(request).publishers.keys(namespace)
    ]


@router.get("/signing/keys/{namespace}", response_model=list[PublisherKeyOut])
async def publisher_keys(
    request: Request, namespace: Annotated[str, Path(**NAME)]
) -> list[PublisherKeyOut]:
    """The keys a namespace's publishers sign their `model.sig` with."""
    await caller(request)
    return await run_in_threadpool(_keys, request, namespace)


@router.post(
    "/signing/keys/{namespace}",
    response_model=list[PublisherKeyOut],
    openapi_extra=json_body(
        PublisherKeyBody.model_json_schema(ref_template="#/components/schemas/{model}")
    ),
)
async def add_publisher_key(
    request: Request, namespace: Annotated[str, Path(**NAME)]
) -> list[PublisherKeyOut]:
    """Register a publisher key for the namespace (its writers)."""
    principal = await caller(request)
    body = await read_model(request, PublisherKeyBody)
    hub = hub_of(request)
    await run_in_threadpool(hub.publishers.register, principal, namespace, body.public_key)
    return await run_in_threadpool(_keys, request, namespace)


@router.delete("/signing/keys/{namespace}/{key_id}", response_model=list[PublisherKeyOut])
async def remove_publisher_key(
    request: Request,
    namespace: Annotated[str, Path(**NAME)],
    key_id: Annotated[str, Path(pattern="^[0-9a-f]{64}$")],
) -> list[PublisherKeyOut]:
    """Remove a publisher key (the namespace's writers)."""
    principal = await caller(request)
    hub = hub_of(request)
    await run_in_threadpool(hub.publishers.remove, principal, namespace, key_id)
    return await run_in_threadpool(_keys, request, namespace)


refuse_other_methods(router, ["/signatures/{kind}/{namespace}/{name}", "/signing/key"])
refuse_other_methods(router, ["/signing/keys/{namespace}"], "GET, POST")
refuse_other_methods(router, ["/signing/keys/{namespace}/{key_id}"], "DELETE")
