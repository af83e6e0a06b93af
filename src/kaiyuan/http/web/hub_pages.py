"""The hub's own pages: home and search, a namespace, sign in and out, the admin page.

Hub pages live under `/-/`, which no user or organisation can be named (names start with a
letter or digit), so they never collide with `/{namespace}/{name}`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from kaiyuan.bootstrap import Hub
from kaiyuan.core.errors import AccessDeniedError, AuthenticationError, HubError, InvalidInputError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import Commit, Principal, Repo
from kaiyuan.http.context import SESSION_COOKIE, caller, hub_of, read_body
from kaiyuan.http.web import repo_pages
from kaiyuan.http.web.errors import error_page, not_found_page, sign_in_url
from kaiyuan.http.web.render import page

RECENT = 20
ACTIVITY = 10
MAX_FORM_BYTES = 4096
STATIC = StaticFiles(directory=Path(str(files("kaiyuan.http.web") / "static")))

router = APIRouter(include_in_schema=False)


async def serve(request: Request, kind: RepoKind, parts: list[str], *, prefixed: bool) -> Response:
    """The page for a path that is not a download: home, a namespace or a repository page.

    `prefixed`: the path began with `/datasets` or `/models` (then `[]` is that kind's list).
    """
    if len(parts) >= 2 and parts[0] and parts[1]:  # noqa: PLR2004
        try:
            repo_id = RepoId(parts[0], parts[1])
        except InvalidInputError:
            return not_found_page(request, await caller(request))
        return await repo_pages.serve(request, kind, repo_id, parts[2:])
    principal = await caller(request)
    hub = hub_of(request)
    try:
        if not parts or parts == [""]:
            kinds = (kind,) if prefixed else (RepoKind.MODEL, RepoKind.DATASET)
            values = await run_in_threadpool(_home, hub, principal, kinds)
            return page(request, principal, "home.html", **values)
        if prefixed:
            return not_found_page(request, principal)
        values = await run_in_threadpool(_namespace, hub, principal, parts[0])
        return page(request, principal, "namespace.html", **values)
    except HubError as error:
        return error_page(request, principal, error)


def _home(hub: Hub, principal: Principal, kinds: tuple[RepoKind, ...]) -> dict[str, Any]:
    sections = [(_plural(kind), hub.repos.search(principal, kind, limit=RECENT)) for kind in kinds]
    mine: list[Repo] = []
    if principal.user is not None:
        for namespace in (principal.user, *principal.orgs):
            for kind in (RepoKind.MODEL, RepoKind.DATASET):
                mine.extend(hub.repos.search(principal, kind, author=namespace, limit=RECENT))
        mine.sort(key=lambda r: r.updated_at, reverse=True)
    return {
        "sections": sections,
        "mine": mine[:RECENT],
        "activity": _activity(hub, principal, [r for _, repos in sections for r in repos]),
        "query": "",
    }


def _activity(hub: Hub, principal: Principal, repos: list[Repo]) -> list[tuple[Repo, Commit]]:
    """The newest commit of the most recently updated repositories, newest first."""
    recent = sorted(repos, key=lambda r: r.updated_at, reverse=True)[:ACTIVITY]
    found = []
    for repo in recent:
        at = hub.reads.resolve(principal, repo.kind, repo.repo_id, None)
        found.append((repo, at.commit))
    found.sort(key=lambda pair: pair[1].created_at, reverse=True)
    return found


def _namespace(hub: Hub, principal: Principal, name: str) -> dict[str, Any]:
    account = hub.accounts.get(name)
    sections = [
        (_plural(kind), hub.repos.search(principal, kind, author=name, limit=1000))
        for kind in (RepoKind.MODEL, RepoKind.DATASET)
    ]
    return {"account": account, "sections": sections}


def _plural(kind: RepoKind) -> str:
    return "Models" if kind is RepoKind.MODEL else "Datasets"


@router.get("/-/search")
async def search(request: Request) -> Response:
    principal = await caller(request)
    query = request.query_params.get("q", "").strip()
    hub = hub_of(request)

    def run() -> list[tuple[str, list[Repo]]]:
        return [
            (_plural(kind), hub.repos.search(principal, kind, search=query or None, limit=100))
            for kind in (RepoKind.MODEL, RepoKind.DATASET)
        ]

    try:
        sections = await run_in_threadpool(run)
    except HubError as error:
        return error_page(request, principal, error)
    return page(request, principal, "search.html", sections=sections, query=query)


@router.get("/-/login")
async def sign_in_form(request: Request) -> Response:
    principal = await caller(request)
    return page(
        request, principal, "login.html", next=_next(request.query_params.get("next")), error=None
    )


@router.post("/-/login")
async def sign_in(request: Request) -> Response:
    """Check the token, then keep the person signed in with a session cookie (not the token)."""
    hub = hub_of(request)
    anonymous = Principal()
    try:
        _same_origin(request)
        form = _form(await read_body(request, MAX_FORM_BYTES))
        token = form.get("token", "").strip()
        principal, cookie = await run_in_threadpool(hub.sessions.sign_in, token)
    except AuthenticationError as error:
        return page(
            request,
            anonymous,
            "login.html",
            status=401,
            next=_next(request.query_params.get("next")),
            error=error.message.replace("in Authorization header", "").strip(),
        )
    except HubError as error:
        return error_page(request, anonymous, error)
    response = RedirectResponse(_next(form.get("next")), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=hub.sessions.max_age_seconds,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    del principal
    return response


@router.post("/-/logout")
async def sign_out(request: Request) -> Response:
    try:
        _same_origin(request)
    except HubError as error:
        return error_page(request, Principal(), error)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/-/ask-access/{kind}/{namespace}/{name}")
async def ask_access(request: Request, kind: str, namespace: str, name: str) -> Response:
    """The card page's request form: the answers become an access request, as the API's."""
    hub = hub_of(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    principal = await run_in_threadpool(hub.sessions.principal, cookie)
    try:
        _same_origin(request)
        repo_kind, repo_id = RepoKind.parse(kind), RepoId(namespace, name)
        answers = _form(await read_body(request, MAX_FORM_BYTES * 4), limit=64)
        await run_in_threadpool(hub.gating.ask, principal, repo_kind, repo_id, answers)
    except HubError as error:
        return error_page(request, principal, error)
    prefix = "/datasets" if repo_kind is RepoKind.DATASET else ""
    return RedirectResponse(f"{prefix}/{repo_id}", status_code=303)


@router.get("/-/admin")
async def admin(request: Request) -> Response:
    """Storage statistics of the whole hub, for the users named in the `admins` setting."""
    principal = await caller(request)
    if principal.is_anonymous:
        return RedirectResponse(sign_in_url(request), status_code=303)
    hub = hub_of(request)
    if principal.user not in hub.settings.admin_names:
        return error_page(
            request,
            principal,
            AccessDeniedError("the admin page is for the users named in KAIYUAN_ADMINS"),
        )
    usage = await run_in_threadpool(hub.usage.hub)
    return page(request, principal, "admin.html", usage=usage)


def _form(body: bytes, limit: int = 8) -> dict[str, str]:
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=limit, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInputError("the form is not valid URL-encoded UTF-8") from None
    return {key: values[0] for key, values in fields.items() if values}


def _next(value: str | None) -> str:
    """Where to go after signing in: a path on this hub only (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if urlsplit(value).netloc or not value.isprintable():
        return "/"
    return value


def _same_origin(request: Request) -> None:
    """Forms that change the session must come from our own pages (a login-CSRF guard)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None:
        return  # non-browser clients send neither; a browser always sends Origin on POST
    sent = urlsplit(origin).netloc
    public = hub_of(request).settings.public_url
    if sent != request.headers.get("host", "") and (not public or sent != urlsplit(public).netloc):
        raise AccessDeniedError("this form must be sent from the hub's own sign-in page")
