"""Xet token routes: `GET /api/{type}s/{id}/xet-{read|write}-token/{revision}`.

huggingface_hub reads the token from the `X-Xet-*` headers; the JSON body is the form the Xet
specification documents. Both carry the same values.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.http.context import base_url, caller, hub_of
from kaiyuan.http.hfcompat.errors import route_not_found
from kaiyuan.http.hfcompat.rawpath import join_path

CAS_PREFIX = "/cas"


def cas_url(request: Request) -> str:
    return base_url(request) + CAS_PREFIX


def xet_refresh_route(request: Request, kind: RepoKind, repo_id: RepoId, revision: str) -> str:
    plural = "models" if kind is RepoKind.MODEL else "datasets"
    return f"{base_url(request)}/api/{plural}/{repo_id}/xet-read-token/{quote(revision, safe='')}"


async def read_token(
    request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]
) -> Response:
    return await _token(request, kind, repo_id, args, write=False)


async def write_token(
    request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]
) -> Response:
    return await _token(request, kind, repo_id, args, write=True)


async def _token(
    request: Request, kind: RepoKind, repo_id: RepoId, args: list[str], *, write: bool
) -> Response:
    """A Xet CAS token for this repository: read for downloads, write for uploads."""
    revision = join_path(args)
    if not revision:
        return route_not_found()
    principal = await caller(request)
    hub = hub_of(request)
    issued = await run_in_threadpool(hub.cas.issue_token, principal, kind, repo_id, revision, write)
    url = cas_url(request)
    return JSONResponse(
        {"accessToken": issued.token, "exp": issued.expires, "casUrl": url},
        headers={
            "X-Xet-Cas-Url": url,
            "X-Xet-Access-Token": issued.token,
            "X-Xet-Token-Expiration": str(issued.expires),
        },
    )
