"""Storage accounting: `GET /api/storage[/{namespace} | /{models|datasets}/{ns}/{name}]`.

Errors use the app's one mapping (`{"error": ...}` with the status).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from kaiyuan.core.errors import AuthenticationError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.http.context import caller, hub_of
from kaiyuan.services.usage import Usage

router = APIRouter(prefix="/api/storage")


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "files": usage.files,
        "logicalBytes": usage.logical_bytes,
        "storedBytes": usage.stored_bytes,
    }


@router.get("")
async def hub_storage(request: Request) -> Response:
    principal = await caller(request)
    if principal.user is None:
        raise AuthenticationError("a token is required to see the hub's storage")
    usage = await run_in_threadpool(hub_of(request).usage.hub)
    return JSONResponse(
        {
            **usage_json(usage.held),
            "physicalBytes": usage.physical_bytes,
            "unreferencedBytes": usage.unreferenced_bytes,
            "xorbs": usage.totals["xorbs"],
            "chunks": usage.totals["chunks"],
            "wholeBlobs": usage.totals["whole_blobs"],
        }
    )


@router.get("/{namespace}")
async def namespace_storage(request: Request, namespace: str) -> Response:
    principal = await caller(request)
    usage = await run_in_threadpool(hub_of(request).usage.namespace, principal, namespace)
    return JSONResponse({"namespace": namespace, **usage_json(usage)})


@router.get("/{kind}/{namespace}/{name}")
async def repo_storage(request: Request, kind: str, namespace: str, name: str) -> Response:
    repo_kind = RepoKind.parse(kind)
    repo_id = RepoId(namespace, name)
    principal = await caller(request)
    usage = await run_in_threadpool(hub_of(request).usage.repo, principal, repo_kind, repo_id)
    return JSONResponse({"id": str(repo_id), "type": repo_kind.value, **usage_json(usage)})
