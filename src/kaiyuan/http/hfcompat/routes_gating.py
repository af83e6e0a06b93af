"""Gated repositories on the HF wire: asking for access, and the owner's request queue.

`POST /api/{type}/{ns}/{name}/ask-access` takes the request form's answers as a JSON object of
strings. The queue routes are the ones `huggingface_hub` calls:
`GET .../user-access-request/{pending|accepted|rejected}`, `POST .../user-access-request/handle`
and `POST .../user-access-request/grant`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from kaiyuan.core.errors import InvalidInputError, NotFoundError
from kaiyuan.core.ids import RepoId, RepoKind, validate_name
from kaiyuan.core.models import AccessRequest, AccessStatus, Gating
from kaiyuan.http.context import caller, field, hub_of, read_json_object
from kaiyuan.http.hfcompat.errors import route_not_found
from kaiyuan.http.hfcompat.wire import iso


def gating_flag(value: object) -> Gating | None:
    """The `gated` setting: false, "auto" or "manual"."""
    if value is False:
        return None
    if isinstance(value, str) and value in {g.value for g in Gating}:
        return Gating(value)
    raise InvalidInputError("gated must be false, 'auto' or 'manual'")


def request_json(request: AccessRequest) -> dict[str, Any]:
    return {
        "requestId": request.request_id,
        "user": {"user": request.user},
        "status": request.status.value,
        "timestamp": iso(request.requested_at),
        "decidedAt": iso(request.decided_at) if request.decided_at else None,
        "decidedBy": request.decided_by,
        "rejectionReason": request.reason,
        "fields": request.fields,
    }


async def ask_access(
    request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]
) -> Response:
    if args:
        return route_not_found()
    principal = await caller(request)
    answers = await read_json_object(request)
    if not all(isinstance(v, str) for v in answers.values()):
        raise InvalidInputError("the request form's answers must be strings")
    made = await run_in_threadpool(hub_of(request).gating.ask, principal, kind, repo_id, answers)
    return JSONResponse(request_json(made))


async def list_requests(
    request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]
) -> Response:
    if len(args) != 1 or args[0] not in {s.value for s in AccessStatus}:
        return route_not_found()
    principal = await caller(request)
    found = await run_in_threadpool(
        hub_of(request).gating.requests, principal, kind, repo_id, AccessStatus(args[0])
    )
    return JSONResponse([request_json(r) for r in found])


async def manage_request(
    request: Request, kind: RepoKind, repo_id: RepoId, args: list[str]
) -> Response:
    if len(args) != 1 or args[0] not in {"handle", "grant"}:
        return route_not_found()
    principal = await caller(request)
    data = await read_json_object(request)
    gating = hub_of(request).gating
    if args[0] == "grant":
        user = validate_name(field(data, "user", str, required=True), "user")
        made = await run_in_threadpool(gating.grant, principal, kind, repo_id, user)
        return JSONResponse(request_json(made))
    status = field(data, "status", str, required=True)
    if status not in {s.value for s in AccessStatus}:
        raise InvalidInputError("status must be 'accepted', 'rejected' or 'pending'")
    reason = field(data, "rejectionReason", str)
    user = field(data, "user", str)
    request_id = field(data, "requestId", str)
    if (user is None) == (request_id is None):
        raise InvalidInputError("send exactly one of 'user' and 'requestId'")

    def run() -> AccessRequest:
        who = user
        if who is None:
            every = [
                r
                for state in AccessStatus
                for r in gating.requests(principal, kind, repo_id, state)
            ]
            who = next((r.user for r in every if r.request_id == request_id), None)
            if who is None:
                raise NotFoundError(f"no access request {request_id!r}")
        return gating.decide(principal, kind, repo_id, who, AccessStatus(status), reason)

    return JSONResponse(request_json(await run_in_threadpool(run)))
