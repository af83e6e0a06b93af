"""Routing on the raw path: `/api/{models|datasets}/{ns}/{name}/{action}/...` and friends.

Starlette decodes %2F before matching routes, which would split `refs%2Fpr%2F1`; so these
catch-all routes split the undecoded path themselves and hand each handler its segments.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response

from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.http.hfcompat import (
    routes_files,
    routes_gating,
    routes_repos,
    routes_upload,
    routes_xet,
)
from kaiyuan.http.hfcompat.errors import route_not_found
from kaiyuan.http.hfcompat.rawpath import segments
from kaiyuan.http.web import hub_pages

Handler = Callable[[Request, RepoKind, RepoId, list[str]], Awaitable[Response]]

_API: dict[str, dict[str | None, Handler]] = {
    "GET": {
        None: routes_repos.info,
        "revision": routes_repos.info,
        "tree": routes_files.tree,
        "refs": routes_repos.refs,
        "commits": routes_repos.commits,
        "xet-read-token": routes_xet.read_token,
        "xet-write-token": routes_xet.write_token,
        "user-access-request": routes_gating.list_requests,
    },
    "POST": {
        "paths-info": routes_files.paths_info,
        "preupload": routes_upload.preupload,
        "commit": routes_upload.commit,
        "branch": routes_repos.create_branch,
        "tag": routes_repos.create_tag,
        "ask-access": routes_gating.ask_access,
        "user-access-request": routes_gating.manage_request,
    },
    "DELETE": {
        "branch": routes_repos.delete_branch,
        "tag": routes_repos.delete_tag,
    },
    "PUT": {"settings": routes_repos.settings},
}

router = APIRouter()


@router.put("/api/lfs/objects/{sha256}")
async def lfs_put(request: Request, sha256: str) -> Response:
    return await routes_upload.lfs_put(request, sha256)


@router.post("/api/lfs/objects/{sha256}")
async def lfs_complete(request: Request, sha256: str) -> Response:
    return await routes_upload.lfs_complete(request, sha256)


@router.put("/api/lfs/objects/{sha256}/parts/{number}")
async def lfs_put_part(request: Request, sha256: str, number: int) -> Response:
    return await routes_upload.lfs_put_part(request, sha256, number)


@router.api_route("/api/{kind}/{rest:path}", methods=["GET", "POST", "DELETE", "PUT"])
async def api(request: Request) -> Response:
    parts = segments(request)  # ["api", kind, ns, name, action?, ...]
    if parts[1] not in {"models", "datasets"}:
        return route_not_found()
    if len(parts) < 4:  # noqa: PLR2004
        return route_not_found()
    kind = RepoKind.parse(parts[1])
    action = parts[4] if len(parts) > 4 else None  # noqa: PLR2004
    handler = _API.get(request.method, {}).get(action)
    if handler is None:
        return route_not_found()
    return await handler(request, kind, RepoId(parts[2], parts[3]), parts[5:])


_PROTOCOL_PREFIXES = frozenset({"api", "cas"})


def _repo_path(parts: list[str]) -> tuple[RepoKind, list[str], bool]:
    """The kind, the rest of the path, and whether a `/datasets` or `/models` prefix named it."""
    if parts and parts[0] == "datasets":
        return RepoKind.DATASET, parts[1:], True
    if parts and parts[0] == "models":
        return RepoKind.MODEL, parts[1:], True
    return RepoKind.MODEL, parts, False


@router.api_route("/{rest:path}", methods=["GET", "HEAD"])
async def files(request: Request) -> Response:
    """`/{ns}/{name}/resolve/{rev}/{path}` (`/datasets/...` for datasets); else a web page."""
    kind, parts, prefixed = _repo_path(segments(request))
    if not prefixed and parts and parts[0] in _PROTOCOL_PREFIXES:
        # Protocol clients probe routes this hub may not have (hf_xet asks /cas/v2 and falls
        # back to v1 on a 404): those get the protocol's 404, never a page.
        return route_not_found()
    if len(parts) >= 3 and parts[2] == "resolve":  # noqa: PLR2004
        if len(parts) < 4:  # noqa: PLR2004
            return route_not_found()
        return await routes_files.resolve(request, kind, RepoId(parts[0], parts[1]), parts[3:])
    return await hub_pages.serve(request, kind, parts, prefixed=prefixed)


@router.post("/{rest:path}")
async def lfs(request: Request, rest: str) -> Response:
    """`/{ns}/{name}.git/info/lfs/objects/{batch|verify}` (with `datasets/` for datasets)."""
    del rest  # the raw path is parsed instead: it keeps %2F intact
    kind, parts, _ = _repo_path(segments(request))
    if len(parts) != 6 or parts[2:5] != ["info", "lfs", "objects"] or not parts[1].endswith(".git"):  # noqa: PLR2004
        return route_not_found()
    repo_id = RepoId(parts[0], parts[1].removesuffix(".git"))
    if parts[5] == "batch":
        return await routes_upload.lfs_batch(request, kind, repo_id)
    if parts[5] == "verify":
        return await routes_upload.lfs_verify(request, kind, repo_id)
    return route_not_found()
