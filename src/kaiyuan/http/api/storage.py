"""Storage accounting: `GET /api/storage[/{namespace} | /{models|datasets}/{ns}/{name}]`.

Part of the native API: typed answers, described in the OpenAPI document at `/api/openapi.json`.
Errors use the app's one mapping (`{"error": ...}` with the status).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from kaiyuan.core.errors import AuthenticationError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.http.api.schema import ERRORS, NAME, REPO_KIND, refuse_other_methods
from kaiyuan.http.context import caller, hub_of
from kaiyuan.services.usage import Usage

router = APIRouter(prefix="/api/storage", tags=["storage"], responses=ERRORS)


class StorageUsage(BaseModel):
    """What a scope holds (logical) and what that occupies once deduplicated (stored)."""

    model_config = ConfigDict(populate_by_name=True)

    files: int = Field(ge=0, description="Distinct contents held.")
    logical_bytes: int = Field(alias="logicalBytes", ge=0, description="Their sizes, summed.")
    stored_bytes: int = Field(
        alias="storedBytes", ge=0, description="What they occupy after deduplication."
    )

    @classmethod
    def of(cls, usage: Usage) -> StorageUsage:
        return cls(
            files=usage.files, logical_bytes=usage.logical_bytes, stored_bytes=usage.stored_bytes
        )


class HubStorage(StorageUsage):
    physical_bytes: int = Field(alias="physicalBytes", ge=0, description="Bytes in the store.")
    unreferenced_bytes: int = Field(
        alias="unreferencedBytes", ge=0, description="Stored bytes nothing uses (gc frees them)."
    )
    xorbs: int = Field(ge=0)
    chunks: int = Field(ge=0)
    whole_blobs: int = Field(alias="wholeBlobs", ge=0)


class NamespaceStorage(StorageUsage):
    namespace: str


class RepoStorage(StorageUsage):
    id: str
    type: str


@router.get("", response_model=HubStorage, response_model_by_alias=True)
async def hub_storage(request: Request) -> HubStorage:
    """The whole hub; any signed-in user."""
    principal = await caller(request)
    if principal.user is None:
        raise AuthenticationError("a token is required to see the hub's storage")
    usage = await run_in_threadpool(hub_of(request).usage.hub)
    held = StorageUsage.of(usage.held)
    return HubStorage(
        **held.model_dump(),
        physical_bytes=usage.physical_bytes,
        unreferenced_bytes=usage.unreferenced_bytes,
        xorbs=usage.totals["xorbs"],
        chunks=usage.totals["chunks"],
        whole_blobs=usage.totals["whole_blobs"],
    )


@router.get("/{namespace}", response_model=NamespaceStorage, response_model_by_alias=True)
async def namespace_storage(
    request: Request, namespace: Annotated[str, Path(**NAME)]
) -> NamespaceStorage:
    """Every repository of a user or organisation; for that user or the org's members."""
    principal = await caller(request)
    usage = await run_in_threadpool(hub_of(request).usage.namespace, principal, namespace)
    return NamespaceStorage(namespace=namespace, **StorageUsage.of(usage).model_dump())


@router.get("/{kind}/{namespace}/{name}", response_model=RepoStorage, response_model_by_alias=True)
async def repo_storage(
    request: Request,
    kind: Annotated[str, Path(**REPO_KIND)],
    namespace: Annotated[str, Path(**NAME)],
    name: Annotated[str, Path(**NAME)],
) -> RepoStorage:
    """One repository (`kind` is `models` or `datasets`); for whoever may read it."""
    repo_kind = RepoKind.parse(kind)
    repo_id = RepoId(namespace, name)
    principal = await caller(request)
    usage = await run_in_threadpool(hub_of(request).usage.repo, principal, repo_kind, repo_id)
    return RepoStorage(id=str(repo_id), type=repo_kind.value, **StorageUsage.of(usage).model_dump())


refuse_other_methods(router, ["", "/{namespace}", "/{kind}/{namespace}/{name}"])
