"""The ASGI application: HF-compatible routes over a Hub, with one error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from kaiyuan import __version__
from kaiyuan.bootstrap import Hub
from kaiyuan.core.errors import HubError
from kaiyuan.core.jobs import JobKind
from kaiyuan.http.api import cobuilding as cobuilding_routes
from kaiyuan.http.api import health as health_routes
from kaiyuan.http.api import licences as licence_routes
from kaiyuan.http.api import lineage as lineage_routes
from kaiyuan.http.api import provenance as provenance_routes
from kaiyuan.http.api import scans as scan_routes
from kaiyuan.http.api import sealing as sealing_routes
from kaiyuan.http.api import signatures as signature_routes
from kaiyuan.http.api import storage as storage_routes
from kaiyuan.http.cas import routes as cas_routes
from kaiyuan.http.hfcompat import dispatch, routes_repos
from kaiyuan.http.hfcompat.errors import (
    handle_bad_parameters,
    handle_hub_error,
    handle_unexpected,
)
from kaiyuan.http.web import hub_pages
from kaiyuan.services.jobs import JobTimings, JobWorker
from kaiyuan.services.provenance.worker import ProvenanceWorker


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    hub: Hub = app.state.hub
    worker = None
    if hub.settings.provenance_worker:
        worker = ProvenanceWorker(hub.provenance, hub.settings.provenance_poll_seconds)
        worker.start()
    jobs = None
    if hub.settings.job_worker:
        timings = JobTimings(hub.settings.job_poll_seconds, hub.settings.job_stale_seconds)
        handlers = {JobKind.CURATION: hub.curation.run}
        jobs = JobWorker(hub.metadata, hub.jobs, handlers, timings)
        jobs.start()
    try:
        yield
    finally:
        if worker is not None:
            worker.stop()
        if jobs is not None:
            jobs.stop()


def create_app(hub: Hub) -> FastAPI:
    # The OpenAPI document describes the native API; the HF-compatible and Xet CAS routes follow
    # their own protocols (see COMPAT.md) and stay out of it.
    app = FastAPI(
        title="Kaiyuan native API",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=_lifespan,
    )
    app.state.hub = hub
    app.add_exception_handler(HubError, handle_hub_error)
    app.add_exception_handler(RequestValidationError, handle_bad_parameters)
    app.add_exception_handler(Exception, handle_unexpected)
    app.include_router(routes_repos.router, include_in_schema=False)
    app.include_router(cas_routes.router, include_in_schema=False)
    app.include_router(storage_routes.router)
    app.include_router(health_routes.router)
    app.include_router(lineage_routes.router)
    app.include_router(licence_routes.router)
    app.include_router(provenance_routes.router)
    app.include_router(scan_routes.router)
    app.include_router(signature_routes.router)
    app.include_router(sealing_routes.router)
    app.include_router(cobuilding_routes.router)
    app.include_router(hub_pages.router)
    app.mount("/-/static", hub_pages.STATIC, name="static")
    # The catch-all routes come last: they match any path.
    app.include_router(dispatch.router, include_in_schema=False)
    return app
