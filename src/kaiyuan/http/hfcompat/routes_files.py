"""Reading files: tree listings, paths-info, and HEAD/GET resolve with the headers clients need."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import FileEntry
from kaiyuan.core.scanning import FileScan
from kaiyuan.http.context import caller, hub_of, parse_json, read_body
from kaiyuan.http.hfcompat import wire
from kaiyuan.http.hfcompat.errors import route_not_found
from kaiyuan.http.hfcompat.paging import next_link, page_params
from kaiyuan.http.hfcompat.rawpath import join_path
from kaiyuan.http.hfcompat.responses import send_content
from kaiyuan.http.hfcompat.routes_xet import xet_refresh_route

TREE_PAGE = 1000
TREE_PAGE_EXPANDED = 50
MAX_FORM_BYTES = 4 * 1024 * 1024
MAX_FORM_FIELDS = 10_000


async def tree(request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]) -> Response:
    if not args or not args[0]:
        return route_not_found()
    revision, folder = args[0], join_path(args[1:])
    principal = await caller(request)
    recursive = request.query_params.get("recursive", "").lower() in {"1", "true"}
    expand = request.query_params.get("expand", "").lower() in {"1", "true"}
    offset, limit = page_params(request, TREE_PAGE_EXPANDED if expand else TREE_PAGE)
    reads = hub_of(request).reads

    def run() -> list[Any]:
        at = reads.resolve(principal, kind, repo_id, revision)
        return reads.list_tree(at, folder, recursive=recursive)

    entries = await run_in_threadpool(run)
    page = entries[offset : offset + limit]
    headers = {}
    if offset + limit < len(entries):
        headers["Link"] = next_link(request, offset + limit)
    security = await _verdicts(request, page) if expand else None
    return JSONResponse([wire.entry_json(e, security) for e in page], headers=headers)


async def _verdicts(request: Request, entries: list[Any]) -> dict[str, FileScan]:
    """The scan verdicts on the files among `entries` (expanded listings show them)."""
    scanning = hub_of(request).scanning
    contents = [e.sha256 for e in entries if isinstance(e, FileEntry)]
    return await run_in_threadpool(scanning.verdicts, contents)


async def paths_info(
    request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]
) -> Response:
    if len(args) != 1 or not args[0]:
        return route_not_found()
    principal = await caller(request)
    paths, expand = await _paths_from(request)
    reads = hub_of(request).reads

    def run() -> list[Any]:
        at = reads.resolve(principal, kind, repo_id, args[0])
        return reads.paths_info(at, paths)

    entries = await run_in_threadpool(run)
    security = await _verdicts(request, entries) if expand else None
    return JSONResponse([wire.entry_json(e, security) for e in entries])


async def _paths_from(request: Request) -> tuple[list[str], bool]:
    """`paths` and `expand` from a form body (what the client sends) or a JSON body."""
    body = await read_body(request, MAX_FORM_BYTES)
    if "json" in request.headers.get("content-type", ""):
        data = parse_json(body, hub_of(request).settings.max_json_depth)
        paths = data.get("paths") if isinstance(data, dict) else None
        expand = data.get("expand") if isinstance(data, dict) else None
    else:
        try:
            form = parse_qs(body.decode("utf-8"), max_num_fields=MAX_FORM_FIELDS)
        except (UnicodeDecodeError, ValueError):
            raise InvalidInputError("form body is not valid UTF-8 form data") from None
        paths = form.get("paths", [])
        expand = (form.get("expand") or [""])[-1]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise InvalidInputError("'paths' must be a list of strings")
    return paths, expand is True or str(expand).lower() in {"1", "true"}


async def resolve(request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]) -> Response:
    """HEAD/GET /{repo}/resolve/{rev}/{path}: the file, with X-Repo-Commit and ETag."""
    if len(args) < 2 or not args[0]:  # noqa: PLR2004
        return route_not_found()
    revision, path = args[0], join_path(args[1:])
    principal = await caller(request)
    hub = hub_of(request)

    def run() -> tuple[str, FileEntry]:
        at, entry = hub.reads.downloadable(principal, kind, repo_id, revision, path)
        return at.commit.sha, entry

    commit, entry = await run_in_threadpool(run)
    etag = entry.sha256 if entry.lfs else entry.oid
    headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"'}
    if entry.lfs:
        headers["X-Linked-Etag"] = f'"{entry.sha256}"'
        headers["X-Linked-Size"] = str(entry.size)
    if entry.xet_hash:
        # With these, hf_xet clients fetch the file through the CAS instead of this response.
        refresh = xet_refresh_route(request, kind, repo_id, commit)
        headers["X-Xet-Hash"] = entry.xet_hash
        headers["X-Xet-Refresh-Route"] = refresh
        headers["Link"] = f'<{refresh}>; rel="xet-auth"'
    contents = hub.contents
    return await send_content(
        request,
        size=entry.size,
        locate=lambda start, end: contents.segments(entry.sha256, start, end),
        local=contents.local_segments,
        read=contents.read_segments,
        headers=headers,
    )
