"""Templates, the values every page gets, and the filters they use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from kaiyuan import __version__
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import Principal
from kaiyuan.http.context import base_url

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")
_KILO = 1000


def human_size(size: int) -> str:
    """Decimal units, as the HF pages show them: 1.5 kB, 4.27 GB."""
    value = float(size)
    for unit in _UNITS:
        if value < _KILO or unit == _UNITS[-1]:
            return f"{size} B" if unit == "B" else f"{value:.3g} {unit}"
        value /= _KILO
    return f"{size} B"


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def url_path(path: str) -> str:
    """A repository path for a URL: each segment quoted, the slashes kept."""
    return quote(path, safe="/")


def revision_segment(revision: str) -> str:
    """A revision as one URL segment: `refs/pr/1` travels as `refs%2Fpr%2F1`."""
    return quote(revision, safe="")


@dataclass(frozen=True, slots=True)
class RepoLinks:
    """Where a repository's pages are; the prefix carries `/datasets` for datasets."""

    kind: RepoKind
    repo_id: RepoId

    @property
    def home(self) -> str:
        prefix = "/datasets" if self.kind is RepoKind.DATASET else ""
        return f"{prefix}/{self.repo_id}"

    def tree(self, revision: str, path: str = "") -> str:
        tail = f"/{url_path(path)}" if path else ""
        return f"{self.home}/tree/{revision_segment(revision)}{tail}"

    def blob(self, revision: str, path: str) -> str:
        return f"{self.home}/blob/{revision_segment(revision)}/{url_path(path)}"

    def resolve(self, revision: str, path: str) -> str:
        return f"{self.home}/resolve/{revision_segment(revision)}/{url_path(path)}"

    def commits(self, revision: str) -> str:
        return f"{self.home}/commits/{revision_segment(revision)}"

    def commit(self, sha: str) -> str:
        return f"{self.home}/commit/{sha}"

    @property
    def refs(self) -> str:
        return f"{self.home}/refs"


_ENV = Environment(
    loader=PackageLoader("kaiyuan.http.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["size"] = human_size
_ENV.filters["when"] = when
_ENV.filters["urlpath"] = url_path
_ENV.globals["version"] = __version__


def page(
    request: Request,
    principal: Principal,
    template: str,
    *,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    """A rendered page. Pages may differ per person, so no shared cache may keep them."""
    html = _ENV.get_template(template).render(
        request_path=request.url.path, principal=principal, hub_url=base_url(request), **values
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Cache-Control": "private, no-store",
            # Nothing on a page runs script; a card that slipped past the sanitiser still cannot.
            "Content-Security-Policy": "default-src 'self'; script-src 'none'; "
            "img-src 'self' https: data:; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'; form-action 'self'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )
