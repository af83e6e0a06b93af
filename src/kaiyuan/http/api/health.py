"""`GET /api/health`: whether this process reaches its database and its blob store right now.

For load balancers and monitoring: 200 when both answer, 503 (with what failed) when either does
not. Not counted against rate limits, and it reveals nothing but the two words.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from kaiyuan.bootstrap import Hub
from kaiyuan.core.errors import StorageUnavailableError
from kaiyuan.http.api.schema import refuse_other_methods
from kaiyuan.http.context import hub_of

router = APIRouter(prefix="/api/health", tags=["health"])

State = Literal["ok", "unavailable"]
_PROBE = "0" * 64  # a digest no content has: asking for it touches the store, finds nothing


class Health(BaseModel):
    database: State
    store: State


def _check(hub: Hub) -> Health:
    database: State = "ok"
    store: State = "ok"
    try:
        with hub.metadata.session() as session:
            session.get_account("")
    except StorageUnavailableError:
        database = "unavailable"
    try:
        hub.blobs.exists(_PROBE)
    except StorageUnavailableError:
        store = "unavailable"
    return Health(database=database, store=store)


@router.get(
    "",
    response_model=Health,
    responses={503: {"model": Health, "description": "The database or the store is down."}},
)
async def health(request: Request) -> JSONResponse:
    """Whether the database and the blob store answer; 503 when either does not."""
    found = await run_in_threadpool(_check, hub_of(request))
    healthy = found.database == "ok" and found.store == "ok"
    headers = {} if healthy else {"Retry-After": "5"}
    return JSONResponse(found.model_dump(), status_code=200 if healthy else 503, headers=headers)


refuse_other_methods(router, [""])
