"""Signed revisions: `GET /api/signatures/{kind}/{ns}/{name}` and `GET /api/signing/key`.

The first is the hub's OpenSSF model signing (OMS) bundle for a revision; the second the hub's
public key, which verifiers should pin (`kaiyuan verify --key`). Part of the native API,
described at `/api/openapi.json`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.http.api.schema import ERRORS, NAME, REPO_KIND, refuse_other_methods
from kaiyuan.http.context import caller, hub_of

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
    repo_id = RepoId(namespace, name)
    found = await run_in_threadpool(
        hub_of(request).signing.signature, principal, RepoKind.parse(kind), repo_id, revision
    )
    return Signature(
        id=str(repo_id),
        revision=found.commit,
        signer=found.signer,
        key_id=found.key_id,
        created_at=found.created_at,
        bundle=json.loads(found.bundle),
    )


@router.get("/signing/key", response_model=SigningKey)
async def signing_key(request: Request) -> SigningKey:
    """The hub's public signing key."""
    key = hub_of(request).signing.key
    return SigningKey(key_id=key.key_id, public_key=key.public_pem.decode("ascii"))


refuse_other_methods(router, ["/signatures/{kind}/{namespace}/{name}", "/signing/key"])
