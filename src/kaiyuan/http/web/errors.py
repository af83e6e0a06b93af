"""The one place domain errors become pages: the status the API would give, said for people."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from kaiyuan.core import errors as e
from kaiyuan.core.models import Principal
from kaiyuan.http.hfcompat.errors import status_of
from kaiyuan.http.web.render import page

_TITLES = {
    400: "That request is not valid",
    401: "Sign in to see this",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    422: "Refused by the licence policy",
    429: "Too many requests",
    503: "Temporarily unavailable",
}


def error_page(request: Request, principal: Principal, error: e.HubError) -> Response:
    status, _ = status_of(error)
    if status == 401 and principal.is_anonymous:  # noqa: PLR2004
        return RedirectResponse(sign_in_url(request), status_code=303)
    response = page(
        request,
        principal,
        "error.html",
        status=status,
        title=_TITLES.get(status, "Something went wrong"),
        message=error.message,
    )
    if isinstance(error, e.RateLimitedError):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def not_found_page(request: Request, principal: Principal) -> HTMLResponse:
    return page(
        request,
        principal,
        "error.html",
        status=404,
        title=_TITLES[404],
        message=f"There is no page at {request.url.path}.",
    )


def sign_in_url(request: Request) -> str:
    return f"/-/login?next={quote(request.url.path, safe='/')}"
