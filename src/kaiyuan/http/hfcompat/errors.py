"""The one place domain errors become HTTP answers the HF clients understand."""

from __future__ import annotations

import logging
import uuid

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from kaiyuan.core import errors as e

log = logging.getLogger("kaiyuan.http")

# (error class, status, X-Error-Code); the first matching class wins, so subclasses come first.
_MAPPING: list[tuple[type[e.HubError], int, str | None]] = [
    (e.RepoNotFoundError, 404, "RepoNotFound"),
    (e.RevisionNotFoundError, 404, "RevisionNotFound"),
    (e.EntryNotFoundError, 404, "EntryNotFound"),
    (e.BlobNotFoundError, 404, "EntryNotFound"),
    (e.NotFoundError, 404, None),
    (e.AuthenticationError, 401, None),
    (e.GatedRepoError, 403, "GatedRepo"),
    (e.AccessDeniedError, 403, None),
    (e.StaleParentError, 412, None),
    (e.ConflictError, 409, None),
    (e.TooLargeError, 413, None),
    (e.PolicyViolationError, 422, None),
    (e.InvalidInputError, 400, None),
    (e.UnsupportedError, 501, None),
    (e.StorageUnavailableError, 503, None),
    (e.RateLimitedError, 429, None),
]


def status_of(error: e.HubError) -> tuple[int, str | None]:
    for cls, status, code in _MAPPING:
        if isinstance(error, cls):
            return status, code
    return 500, None


def error_response(error: e.HubError) -> JSONResponse:
    status, code = status_of(error)
    if isinstance(error, e.GatedRepoError) and not error.signed_in:
        status = 401
    headers = {"X-Error-Message": header_safe(error.message)}
    if code:
        headers["X-Error-Code"] = code
    if isinstance(error, e.EntryNotFoundError) and error.commit_id:
        headers["X-Repo-Commit"] = error.commit_id
    if isinstance(error, e.RateLimitedError):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, e.StorageUnavailableError):
        headers["Retry-After"] = "5"  # an outage of the database or store is usually brief
    return JSONResponse({"error": error.message}, status_code=status, headers=headers)


async def handle_hub_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, e.HubError)  # noqa: S101 - registered for HubError only
    return error_response(error)


async def handle_bad_parameters(_request: Request, error: Exception) -> JSONResponse:
    """A query or path parameter the native API's declaration refuses: 400, like any bad input."""
    assert isinstance(error, RequestValidationError)  # noqa: S101 - registered for it only
    problem = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in problem.get("loc", ()) if p not in {"query", "path", "body"})
    return error_response(e.InvalidInputError(f"{where or 'request'}: {problem.get('msg')}"))


async def handle_unexpected(request: Request, error: Exception) -> JSONResponse:
    request_id = uuid.uuid4().hex
    log.error(
        "unhandled error on %s %s [%s]",
        request.method,
        request.url.path,
        request_id,
        exc_info=error,
    )
    return JSONResponse(
        {"error": f"internal error; request id {request_id}"},
        status_code=500,
        headers={"X-Request-Id": request_id},
    )


def header_safe(message: str) -> str:
    """A message as a header value: latin-1, no line breaks, no control characters.

    A message can quote user input; one control character would make the server drop the
    response instead of sending it.
    """
    flat = " ".join(message.split())
    text = flat.encode("latin-1", "replace").decode("latin-1")
    return "".join(c if c.isprintable() else "?" for c in text)[:1000]


def route_not_found() -> JSONResponse:
    """A URL of no known shape (a missing revision segment, an extra segment, an unknown action)."""
    return JSONResponse(
        {"error": "no such endpoint; see COMPAT.md for the URLs this hub serves"},
        status_code=404,
        headers={"X-Error-Message": "no such endpoint"},
    )
