"""Writing: preupload, the NDJSON commit, and the LFS batch / upload / verify endpoints."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from kaiyuan.core.errors import InvalidInputError, UnsupportedError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.lineage import Severity
from kaiyuan.http.context import base_url, caller, field, hub_of, read_body, read_json_object
from kaiyuan.http.hfcompat.errors import header_safe, route_not_found
from kaiyuan.http.hfcompat.ndjson import parse_commit
from kaiyuan.http.hfcompat.routes_repos import repo_url
from kaiyuan.services.preupload import Candidate, plan
from kaiyuan.services.uploads import ObjectPlan, SizedWriter, UploadGrant

LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"
SAMPLE_LIMIT = 4096


def _refuse_pull_requests(request: Request) -> None:
    if request.query_params.get("create_pr", "").lower() in {"1", "true"}:
        raise UnsupportedError("pull requests are not supported by this hub yet")


async def preupload(request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]) -> Response:
    if len(args) != 1 or not args[0]:
        return route_not_found()
    _refuse_pull_requests(request)
    principal = await caller(request)
    data = await read_json_object(request)
    files = field(data, "files", list, required=True)
    candidates = [_candidate(item) for item in files]
    hub = hub_of(request)

    def run() -> list[Any]:
        threshold = hub.settings.lfs_threshold_bytes
        return plan(hub.reads, principal, kind, repo_id, args[0], candidates, threshold)

    decisions = await run_in_threadpool(run)
    return JSONResponse(
        {
            "files": [
                {
                    "path": d.path,
                    "uploadMode": "lfs" if d.lfs else "regular",
                    "shouldIgnore": False,
                    "oid": d.remote_oid,
                }
                for d in decisions
            ]
        }
    )


def _candidate(item: Any) -> Candidate:
    if not isinstance(item, dict):
        raise InvalidInputError("each file must be an object with path, sample and size")
    path = field(item, "path", str, required=True)
    size = field(item, "size", int, required=True)
    sample_text = field(item, "sample", str) or ""
    if len(sample_text) > SAMPLE_LIMIT:
        raise InvalidInputError("'sample' is longer than 512 bytes of base64")
    try:
        sample = base64.b64decode(sample_text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"'sample' of {path!r} is not valid base64") from None
    return Candidate(path, size, sample)


async def commit(request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]) -> Response:
    if len(args) != 1 or not args[0]:
        return route_not_found()
    _refuse_pull_requests(request)
    principal = await caller(request)
    hub = hub_of(request)
    body = await read_body(request, hub.settings.max_commit_body_bytes)
    parsed = parse_commit(body, hub.settings.max_json_depth)
    branch = args[0]
    result = await run_in_threadpool(hub.commits.commit, principal, kind, repo_id, branch, parsed)
    url = f"{repo_url(base_url(request), kind, repo_id)}/commit/{result.sha}"
    response = JSONResponse({"commitOid": result.sha, "commitUrl": url, "pullRequestUrl": None})
    report = await run_in_threadpool(hub.licensing.report, principal, kind, repo_id, result.sha)
    for finding in report.findings:
        if finding.severity is not Severity.INFO:
            # The HF clients log each X-HF-Warning topic once: `hf upload` users see them.
            text = (
                f"{finding.check} {finding.severity.value}: {finding.message}. Fix: {finding.fix}"
            )
            response.headers.append("X-HF-Warning", f"{finding.check}; {header_safe(text)}")
    return response


# --- LFS ----------------------------------------------------------------------------------------
async def lfs_batch(request: Request, kind: RepoKind, repo_id: RepoId) -> Response:
    principal = await caller(request)
    data = await read_json_object(request)
    if data.get("operation") != "upload":
        raise UnsupportedError("only the LFS 'upload' operation is served; download via /resolve")
    if data.get("hash_algo", "sha256") != "sha256":
        raise InvalidInputError("only sha256 object ids are supported")
    objects = field(data, "objects", list, required=True)
    wanted: list[tuple[str, int]] = []
    for item in objects:
        if not isinstance(item, dict):
            raise InvalidInputError("each object must be an object with oid and size")
        wanted.append((item.get("oid"), item.get("size")))  # type: ignore[arg-type] # checked in plan
    hub = hub_of(request)
    plans = await run_in_threadpool(hub.uploads.plan, principal, kind, repo_id, wanted)
    base = base_url(request)
    prefix = "" if kind is RepoKind.MODEL else f"{kind.plural}/"
    verify = f"{base}/{prefix}{repo_id}.git/info/lfs/objects/verify"
    body = {"transfer": "basic", "objects": [_object_json(base, verify, p) for p in plans]}
    return JSONResponse(body, media_type=LFS_MEDIA_TYPE)


def _grant_query(grant: UploadGrant) -> str:
    return urlencode(
        {
            "repo": grant.repo_pk,
            "size": grant.size,
            "expires": grant.expires,
            "upload_id": grant.upload_id,
            "sig": grant.signature,
        }
    )


def _object_json(base: str, verify: str, plan: ObjectPlan) -> dict[str, Any]:
    item: dict[str, Any] = {"oid": plan.sha256, "size": plan.size, "authenticated": True}
    if plan.error:
        item["error"] = {"code": 422, "message": plan.error}
        return item
    if plan.grant is None:
        return item  # already stored: nothing to do
    href = f"{base}/api/lfs/objects/{plan.sha256}?{_grant_query(plan.grant)}"
    upload: dict[str, Any] = {"href": href}
    if plan.part_count:
        header = {"chunk_size": str(plan.part_size)}
        for number in range(1, plan.part_count + 1):
            header[str(number)] = (
                f"{base}/api/lfs/objects/{plan.sha256}/parts/{number}?{_grant_query(plan.grant)}"
                f"&part_size={plan.part_size}"
            )
        upload["header"] = header
    item["actions"] = {"upload": upload, "verify": {"href": verify}}
    return item


def _grant_from(request: Request, sha256: str) -> UploadGrant:
    params = request.query_params
    numbers = {}
    for name in ("repo", "size", "expires"):
        text = params.get(name, "")
        if not text.isdigit():
            raise InvalidInputError(f"upload link is missing {name!r}")
        numbers[name] = int(text)
    return UploadGrant(
        numbers["repo"],
        sha256,
        numbers["size"],
        numbers["expires"],
        params.get("upload_id", ""),
        params.get("sig", ""),
    )


async def _receive(request: Request, writer: SizedWriter) -> None:
    try:
        async for chunk in request.stream():
            if chunk:
                writer.write(chunk)
    except BaseException:
        writer.abort()
        raise


async def lfs_put(request: Request, sha256: str) -> Response:
    """PUT of a whole object to its signed link; the bytes must hash to the oid."""
    hub = hub_of(request)
    grant = _grant_from(request, sha256)
    writer = hub.uploads.receiver(grant)
    await _receive(request, writer)
    await run_in_threadpool(hub.uploads.finish, grant, writer)
    return Response(status_code=200)


async def lfs_put_part(request: Request, sha256: str, number: int) -> Response:
    hub = hub_of(request)
    grant = _grant_from(request, sha256)
    part_size = request.query_params.get("part_size", "")
    if not part_size.isdigit() or int(part_size) < 1:
        raise InvalidInputError("upload link is missing 'part_size'")
    writer = hub.uploads.part_receiver(grant, number, int(part_size))
    await _receive(request, writer)
    etag = await run_in_threadpool(hub.uploads.finish_part, writer)
    return Response(status_code=200, headers={"ETag": f'"{etag}"'})


async def lfs_complete(request: Request, sha256: str) -> Response:
    """POST to the upload link after all parts: join them, check digest and size."""
    hub = hub_of(request)
    grant = _grant_from(request, sha256)
    data = await read_json_object(request)
    parts = field(data, "parts", list, required=True)
    numbers = [p.get("partNumber") if isinstance(p, dict) else None for p in parts]
    if numbers != list(range(1, len(parts) + 1)):
        raise InvalidInputError("parts must be numbered 1..n in order")
    await run_in_threadpool(hub.uploads.complete, grant, len(parts))
    return JSONResponse({}, media_type=LFS_MEDIA_TYPE)


async def lfs_verify(request: Request, kind: RepoKind, repo_id: RepoId) -> Response:
    principal = await caller(request)
    data = await read_json_object(request)
    oid = field(data, "oid", str, required=True)
    size = field(data, "size", int, required=True)
    await run_in_threadpool(hub_of(request).uploads.verify, principal, kind, repo_id, oid, size)
    return JSONResponse({}, media_type=LFS_MEDIA_TYPE)
