"""Accounts and repositories: whoami, create/delete/list, info, refs, commits, branches, tags."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from kaiyuan.core.errors import AlreadyExistsError, HubError, InvalidInputError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import FileEntry, Principal
from kaiyuan.http.context import base_url, caller, field, hub_of, read_json_object
from kaiyuan.http.hfcompat import wire
from kaiyuan.http.hfcompat.errors import route_not_found
from kaiyuan.http.hfcompat.paging import next_link, page_params
from kaiyuan.http.hfcompat.routes_gating import gating_flag
from kaiyuan.services import cards

router = APIRouter()


def repo_url(base: str, kind: RepoKind, repo_id: RepoId) -> str:
    prefix = "" if kind is RepoKind.MODEL else f"{kind.plural}/"
    return f"{base}/{prefix}{repo_id}"


@router.get("/api/whoami-v2")
async def whoami(request: Request) -> JSONResponse:
    principal = await caller(request)
    user = hub_of(request).accounts.whoami(principal)
    assert user.user is not None  # noqa: S101 - whoami refuses anonymous callers
    role = user.scope.value if user.scope else "read"
    return JSONResponse(
        {
            "type": "user",
            "id": user.user,
            "name": user.user,
            "fullname": user.user,
            "email": None,
            "emailVerified": False,
            "isPro": False,
            "orgs": [{"type": "org", "name": org, "id": org} for org in user.orgs],
            "auth": {
                "type": "access_token",
                "accessToken": {"displayName": user.token_name, "role": role},
            },
        }
    )


@router.get("/api/agent-harnesses")
async def agent_harnesses() -> JSONResponse:
    # Asked by huggingface_hub once a day; nothing to advertise.
    return JSONResponse({"standardEnvVars": [], "harnesses": {}})


def _target(data: dict[str, Any], principal: Principal) -> tuple[RepoKind, RepoId]:
    name = field(data, "name", str, required=True)
    organization = field(data, "organization", str)
    kind = RepoKind.parse(field(data, "type", str))
    if "/" in name and organization is None:
        namespace, _, name = name.partition("/")
    else:
        namespace = organization or principal.user or ""
    if not namespace:
        raise InvalidInputError("no namespace: send 'organization' or use a token")
    return kind, RepoId(namespace, name)


@router.post("/api/repos/create")
async def create_repo(request: Request) -> Response:
    principal = await caller(request)
    data = await read_json_object(request)
    kind, repo_id = _target(data, principal)
    private = _private_flag(data)
    hub = hub_of(request)
    url = repo_url(base_url(request), kind, repo_id)
    try:
        repo = await run_in_threadpool(hub.repos.create, principal, kind, repo_id, private)
    except AlreadyExistsError as exc:
        # The client reads `url` from the 409 when exist_ok=True.
        body = {"error": exc.message, "url": url}
        return JSONResponse(body, status_code=409, headers={"X-Error-Message": exc.message})
    return JSONResponse({"url": url, "name": str(repo.repo_id), "id": f"{kind.value}-{repo.pk}"})


def _private_flag(data: dict[str, Any]) -> bool:
    visibility: str | None = field(data, "visibility", str)
    if visibility is not None:
        if visibility not in {"public", "private"}:
            raise InvalidInputError("visibility must be 'public' or 'private'")
        return visibility == "private"
    return field(data, "private", bool) is True


@router.delete("/api/repos/delete")
async def delete_repo(request: Request) -> Response:
    principal = await caller(request)
    data = await read_json_object(request)
    kind, repo_id = _target(data, principal)
    await run_in_threadpool(hub_of(request).repos.delete, principal, kind, repo_id)
    return JSONResponse({})


@router.post("/api/validate-yaml")
async def validate_yaml(request: Request) -> JSONResponse:
    # The client uploads README.md only after this answers; it must always be JSON.
    try:
        data = await read_json_object(request, hub_of(request).settings.max_card_bytes * 2)
        content = field(data, "content", str, required=True)
        cards.parse_card(content)
    except HubError as exc:
        return JSONResponse({"errors": [{"message": exc.message}], "warnings": []}, status_code=400)
    return JSONResponse({"errors": [], "warnings": []})


@router.get("/api/models")
async def list_models(request: Request) -> JSONResponse:
    return await _list(request, RepoKind.MODEL)


@router.get("/api/datasets")
async def list_datasets(request: Request) -> JSONResponse:
    return await _list(request, RepoKind.DATASET)


async def _list(request: Request, kind: RepoKind) -> JSONResponse:
    principal = await caller(request)
    params = request.query_params
    limit_text = params.get("limit", "100")
    if not limit_text.isdigit():
        raise InvalidInputError("limit must be a positive integer")
    repos = await run_in_threadpool(
        lambda: hub_of(request).repos.search(
            principal,
            kind,
            search=params.get("search") or None,
            author=params.get("author") or None,
            limit=int(limit_text),
        )
    )
    return JSONResponse([wire.repo_summary_json(r) for r in repos])


# --- repo-scoped handlers, reached through the dispatcher -------------------------------------
async def info(request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]) -> Response:
    """Repo info at the default branch (no args) or at a revision ([revision])."""
    revision = None
    if args:
        if len(args) != 1 or not args[0]:
            return route_not_found()
        revision = args[0]
    principal = await caller(request)
    with_blobs = request.query_params.get("blobs", "").lower() in {"1", "true"}
    body = await run_in_threadpool(_info, request, principal, kind, repo_id, revision, with_blobs)
    return JSONResponse(body)


def _info(
    request: Request,
    principal: Principal,
    kind: RepoKind,
    repo_id: RepoId,
    revision: str | None,
    with_blobs: bool,
) -> dict[str, Any]:
    reads = hub_of(request).reads
    at = reads.resolve(principal, kind, repo_id, revision)
    files = [e for e in reads.list_tree(at, "", recursive=True) if isinstance(e, FileEntry)]
    return wire.repo_info_json(
        at.repo, at.commit, files, with_blobs=with_blobs, card_data=_card(request, files)
    )


def _card(request: Request, files: list[FileEntry]) -> dict[str, Any] | None:
    card = next((f for f in files if f.path == cards.CARD_PATH), None)
    if card is None:
        return None
    hub = hub_of(request)
    try:
        text = hub.reads.read_small(card, hub.settings.max_card_bytes).decode("utf-8")
        return cards.parse_card(text)
    except (HubError, UnicodeDecodeError):
        return None  # a card that cannot be read is shown without metadata


async def refs(request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]) -> Response:
    if args:
        return route_not_found()
    principal = await caller(request)
    found = await run_in_threadpool(hub_of(request).repos.refs, principal, kind, repo_id)
    include_prs = request.query_params.get("include_prs", "").lower() in {"1", "true"}
    return JSONResponse(wire.refs_json(found, include_prs=include_prs))


async def commits(request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]) -> Response:
    if len(args) != 1 or not args[0]:
        return route_not_found()
    principal = await caller(request)
    offset, limit = page_params(request, default_limit=50)
    reads = hub_of(request).reads

    def run() -> tuple[list[Any], bool]:
        at = reads.resolve(principal, kind, repo_id, args[0])
        return reads.history(at, offset=offset, limit=limit)

    history, more = await run_in_threadpool(run)
    formatted = "formatted" in request.query_params.getlist(
        "expand[]"
    ) + request.query_params.getlist("expand")
    headers = {"Link": next_link(request, offset + limit)} if more else {}
    return JSONResponse(
        [wire.commit_json(c, formatted=formatted) for c in history], headers=headers
    )


async def create_branch(
    request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]
) -> Response:
    name = _single(args)
    principal = await caller(request)
    data = await read_json_object(request)
    start = field(data, "startingPoint", str)
    hub = hub_of(request)
    await run_in_threadpool(hub.repos.create_branch, principal, kind, repo_id, name, start)
    return JSONResponse({})


async def delete_branch(
    request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]
) -> Response:
    name = _single(args)
    principal = await caller(request)
    await run_in_threadpool(hub_of(request).repos.delete_branch, principal, kind, repo_id, name)
    return JSONResponse({})


async def create_tag(
    request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]
) -> Response:
    revision = _single(args)
    principal = await caller(request)
    data = await read_json_object(request)
    tag = field(data, "tag", str, required=True)
    await run_in_threadpool(
        hub_of(request).repos.create_tag, principal, kind, repo_id, tag, revision
    )
    return JSONResponse({})


async def delete_tag(
    request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]
) -> Response:
    tag = _single(args)
    principal = await caller(request)
    await run_in_threadpool(hub_of(request).repos.delete_tag, principal, kind, repo_id, tag)
    return JSONResponse({})


async def settings(request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]) -> Response:
    if args:
        return route_not_found()
    principal = await caller(request)
    data = await read_json_object(request)
    hub = hub_of(request)
    if not {"private", "visibility", "gated"} & data.keys():
        raise InvalidInputError("nothing to change: send 'private', 'visibility' or 'gated'")
    answer: dict[str, Any] = {}
    if "gated" in data:
        gated = gating_flag(data["gated"])
        await run_in_threadpool(hub.gating.set_gated, principal, kind, repo_id, gated)
        answer["gated"] = gated.value if gated else False
    if "private" in data or "visibility" in data:
        private = _private_flag(data)
        repo = await run_in_threadpool(hub.repos.set_private, principal, kind, repo_id, private)
        answer["private"] = repo.private
    return JSONResponse(answer)


def _single(args: list[str]) -> str:
    if len(args) != 1 or not args[0]:
        raise InvalidInputError("expected exactly one name after the action (encode '/' as %2F)")
    return args[0]
