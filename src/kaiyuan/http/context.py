"""What every handler takes from a request: the hub, the caller, the public URL, bounded bodies."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from kaiyuan.bootstrap import Hub
from kaiyuan.core.errors import AuthenticationError, InvalidInputError, TooLargeError
from kaiyuan.core.models import Principal

BodyModel = TypeVar("BodyModel", bound=BaseModel)

DEFAULT_JSON_DEPTH = 32
SESSION_COOKIE = "kaiyuan_session"
# A browser session counts only for reads: a cookie rides along on cross-site requests, so
# anything that changes state needs the Authorization header (or, in the web pages, a form
# checked for its origin).
_COOKIE_METHODS = frozenset({"GET", "HEAD"})


def hub_of(request: Request) -> Hub:
    hub = request.app.state.hub
    assert isinstance(hub, Hub)  # noqa: S101 - set by create_app
    return hub


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationError("Invalid credentials in Authorization header")
    return value.strip()


async def caller(request: Request) -> Principal:
    """The authenticated caller; anonymous without a header, 401 for a bad token.

    Without a header, a GET or HEAD from a signed-in browser is that person (so downloads from
    the web pages work for private and gated repositories).

    Each call counts against the caller's rate limit (per token, or per address when anonymous).
    """
    hub = hub_of(request)
    secret = bearer(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if secret is not None:
        principal = await run_in_threadpool(hub.accounts.authenticate, secret)
    elif cookie and request.method in _COOKIE_METHODS:
        principal = await run_in_threadpool(hub.sessions.principal, cookie)
    else:
        principal = Principal()
    if principal.token_id:
        subject, limit = f"token:{principal.token_id}", hub.settings.rate_limit_per_minute
    else:
        address = request.client.host if request.client else "unknown"
        subject, limit = f"address:{address}", hub.settings.anonymous_rate_limit_per_minute
    if limit > 0:
        await run_in_threadpool(hub.limiter.take, subject, limit)
    return principal


def base_url(request: Request) -> str:
    """Where clients reach us: the configured public URL, else what the request shows."""
    configured = hub_of(request).settings.public_url
    if configured:
        return configured.rstrip("/")
    return str(request.base_url).rstrip("/")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLargeError(f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise TooLargeError(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int | None = None) -> Any:
    settings = hub_of(request).settings
    body = await read_body(request, limit or settings.max_json_body_bytes)
    return parse_json(body, settings.max_json_depth)


def parse_json(body: bytes, max_depth: int = DEFAULT_JSON_DEPTH) -> Any:
    """JSON from outside; an empty body is an empty object."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge ints, deep nesting
        raise InvalidInputError(f"request body is not valid JSON: {_short(exc)}") from None
    check_json_depth(value, max_depth)
    return value


def check_json_depth(value: Any, max_depth: int) -> None:
    """InvalidInput when arrays and objects nest deeper than `max_depth` (no recursion).

    Strings are checked on the same walk: a lone surrogate (U+D800 to U+DFFF, written as a
    JSON escape) is legal JSON but not Unicode text; nothing downstream (database, git objects)
    can encode it.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    children: Iterable[Any]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
            continue
        if isinstance(item, dict):
            for key in item:
                _check_text(key)
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise InvalidInputError(f"JSON nests deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError("JSON string holds a lone surrogate (\\ud800-\\udfff)") from None


async def read_json_object(request: Request, limit: int | None = None) -> dict[str, Any]:
    data = await read_json(request, limit)
    if not isinstance(data, dict):
        raise InvalidInputError("request body must be a JSON object")
    return data


async def read_model(request: Request, model: type[BodyModel]) -> BodyModel:
    """The JSON body validated against `model`; the first problem as InvalidInput."""
    try:
        return model.model_validate(await read_json_object(request))
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise InvalidInputError(f"{where or 'body'}: {problem['msg']}") from None


def _short(error: BaseException) -> str:
    return str(error)[:200] or type(error).__name__


def field(data: dict[str, Any], name: str, kind: type, *, required: bool = False) -> Any:
    """A typed field of a JSON object: InvalidInput when the type is wrong or it is missing."""
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidInputError(f"field {name!r} is required")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidInputError(f"field {name!r} must be of type {kind.__name__}")
    return value
