"""A repository's pages: card, files at a revision, one file, history, one commit, refs.

URLs follow the HF hub's page layout (`/{ns}/{name}/tree/{rev}/{path}`, `/blob/`, `/commits/`,
`/commit/`; `/datasets/` in front for datasets), so links people already have keep working. Each
page is a tab of the repository; later capabilities add theirs to `TABS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from kaiyuan.bootstrap import Hub
from kaiyuan.core.errors import (
    AccessDeniedError,
    EntryNotFoundError,
    GatedRepoError,
    HubError,
    InvalidInputError,
    NotFoundError,
)
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import FileEntry, FolderEntry, Principal, RefKind, ResolvedRevision
from kaiyuan.core.scanning import PublisherSignature
from kaiyuan.http.context import caller, hub_of
from kaiyuan.http.web import lineage_graph
from kaiyuan.http.web.errors import error_page, not_found_page
from kaiyuan.http.web.markdown import render_card
from kaiyuan.http.web.render import RepoLinks, page
from kaiyuan.services.cards import CARD_PATH, card_body, gate_form, parse_card
from kaiyuan.services.distribution.signing import SIGNATURE_FILE
from kaiyuan.services.lineage import LineageNode

PREVIEW_BYTES = 512 * 1024  # a file page shows at most this much text
HISTORY_PAGE = 50


@dataclass(frozen=True, slots=True)
class Tab:
    """A tab on every repository page: its key, its label and where it points."""

    key: str
    label: str
    href: Callable[[RepoLinks, str], str]  # (links, revision) -> URL


TABS: list[Tab] = [
    Tab("card", "Card", lambda links, _rev: links.home),
    Tab("files", "Files", lambda links, rev: links.tree(rev)),
    Tab("commits", "History", lambda links, rev: links.commits(rev)),
    Tab("refs", "Branches and tags", lambda links, _rev: links.refs),
    Tab("lineage", "Lineage", lambda links, _rev: f"{links.home}/lineage"),
    Tab("licence", "Licence", lambda links, rev: f"{links.home}/licence?revision={rev}"),
    Tab("provenance", "Provenance", lambda links, rev: f"{links.home}/provenance?revision={rev}"),
    Tab("curation", "Co-building", lambda links, rev: f"{links.home}/curation?revision={rev}"),
]

View = Callable[[Hub, Principal, RepoKind, RepoId, list[str], Request], tuple[str, dict[str, Any]]]


async def serve(request: Request, kind: RepoKind, repo_id: RepoId, rest: list[str]) -> Response:
    """The page `rest` names (`[]`, `tree/...`, `blob/...`, `commits/...`, `commit/x`, `refs`)."""
    principal = await caller(request)
    view = _VIEWS.get(rest[0] if rest else "")
    if view is None or (rest and rest[0] in {"blob", "commit"} and len(rest) < 2):  # noqa: PLR2004
        return not_found_page(request, principal)
    hub = hub_of(request)
    try:
        template, values = await run_in_threadpool(
            view, hub, principal, kind, repo_id, rest[1:], request
        )
    except HubError as error:
        return error_page(request, principal, error)
    return page(request, principal, template, **values)


def _frame(at: ResolvedRevision, tab: str, revision: str | None = None) -> dict[str, Any]:
    """What every repository page shows: the repository, its tabs, the revision in view."""
    links = RepoLinks(at.repo.kind, at.repo.repo_id)
    shown = revision or at.requested
    return {
        "repo": at.repo,
        "links": links,
        "revision": shown,
        "commit": at.commit,
        "tab": tab,
        "tabs": [(t.key, t.label, t.href(links, shown)) for t in TABS],
    }


def _card(
    hub: Hub, principal: Principal, kind: RepoKind, repo_id: RepoId, rest: list[str], _r: Request
) -> tuple[str, dict[str, Any]]:
    if rest:
        raise InvalidInputError("the card page takes no path")
    at = hub.reads.resolve(principal, kind, repo_id, None)
    values = _frame(at, "card")
    metadata: dict[str, Any] | None = None
    metadata_error = html = None
    try:
        entry = hub.reads.file(at, CARD_PATH)
    except EntryNotFoundError:
        entry = None
    if entry is not None:
        # The card is shown to everyone who can see the repository, gated or not, as on the HF
        # hub: it is where a gated repository explains its terms.
        text = hub.reads.read_small(entry, hub.settings.max_card_bytes).decode("utf-8", "replace")
        try:
            metadata = parse_card(text)
        except InvalidInputError as exc:
            metadata_error = exc.message
        links: RepoLinks = values["links"]
        html = render_card(
            card_body(text),
            file_base=links.blob(at.commit.sha, "").rstrip("/"),
            raw_base=links.resolve(at.commit.sha, "").rstrip("/"),
        )
    values.update(
        card_html=html,
        metadata=_metadata_rows(metadata or {}),
        metadata_error=metadata_error,
        gate=_gate(hub, principal, at),
        form=_gate_form(metadata or {}),
        prompt=_short(str((metadata or {}).get("extra_gated_prompt", "")), 4000),
    )
    return "repo_card.html", values


def _gate_form(metadata: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """The access request form of a gated repository: (label, type, options) per field."""
    try:
        form = gate_form(metadata.get("extra_gated_fields") or {})
    except InvalidInputError:
        return []
    return [(label, spec["type"], spec["options"]) for label, spec in form.items()]


def _metadata_rows(metadata: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The front matter as (field, values) for the panel; nested values shown as short text."""
    rows = []
    for key, value in metadata.items():
        items = value if isinstance(value, list) else [value]
        rows.append((str(key), [_short(item) for item in items]))
    return rows


def _short(value: object, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _gate(hub: Hub, principal: Principal, at: ResolvedRevision) -> str | None:
    """None when the caller may read the files; else why not, in words."""
    try:
        hub.reads.resolve(principal, at.repo.kind, at.repo.repo_id, at.commit.sha, files=True)
    except GatedRepoError as exc:
        return exc.message
    return None


def _split_revision(rest: list[str]) -> tuple[str, str]:
    revision = rest[0] if rest else ""
    return revision, "/".join(rest[1:]).strip("/")


def _tree(
    hub: Hub, principal: Principal, kind: RepoKind, repo_id: RepoId, rest: list[str], _r: Request
) -> tuple[str, dict[str, Any]]:
    revision, folder = _split_revision(rest)
    at = hub.reads.resolve(principal, kind, repo_id, revision or None)
    entries = hub.reads.list_tree(at, folder, recursive=False)
    values = _frame(at, "files")
    values.update(
        folder=folder,
        crumbs=_crumbs(folder),
        folders=[e for e in entries if isinstance(e, FolderEntry)],
        files=[e for e in entries if isinstance(e, FileEntry)],
        scans=hub.scanning.verdicts(e.sha256 for e in entries if isinstance(e, FileEntry)),
        sealed=hub.sealing.sealed_among(
            at.repo, (e.sha256 for e in entries if isinstance(e, FileEntry))
        ),
        publisher=_publisher(hub, principal, at, entries) if not folder else None,
    )
    return "repo_tree.html", values


def _publisher(
    hub: Hub, principal: Principal, at: ResolvedRevision, entries: list[Any]
) -> PublisherSignature | None:
    """The check of the publisher's own signature, for those who may read the files."""
    if not any(e.path == SIGNATURE_FILE for e in entries):
        return None
    try:
        return hub.publishers.check(principal, at.repo.kind, at.repo.repo_id, at.commit.sha)
    except GatedRepoError:
        return None


def _crumbs(path: str) -> list[tuple[str, str]]:
    """(name, path) for each folder on the way to `path`."""
    parts = [p for p in path.split("/") if p]
    return [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]


def _blob(
    hub: Hub, principal: Principal, kind: RepoKind, repo_id: RepoId, rest: list[str], _r: Request
) -> tuple[str, dict[str, Any]]:
    revision, path = _split_revision(rest)
    if not path:
        raise InvalidInputError("name a file: /blob/{revision}/{path}")
    at = hub.reads.resolve(principal, kind, repo_id, revision)
    entry = hub.reads.file(at, path)
    values = _frame(at, "files")
    gate = _gate(hub, principal, at)
    text = None
    if gate is None:
        head = hub.reads.head(entry, PREVIEW_BYTES)
        text = _as_text(head)
    folder = path.rpartition("/")[0]
    values.update(
        entry=entry,
        folder=folder,
        crumbs=_crumbs(folder),
        name=path.rpartition("/")[2],
        text=text,
        truncated=entry.size > PREVIEW_BYTES,
        gate=gate,
        scan=hub.scanning.verdicts([entry.sha256]).get(entry.sha256),
    )
    return "repo_blob.html", values


def _as_text(data: bytes) -> str | None:
    """The bytes as text when they look like text (UTF-8 without NULs).

    A last character cut by the preview limit is dropped rather than refused.
    """
    if b"\x00" in data:
        return None
    for cut in range(4):
        try:
            return data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def _commits(
    hub: Hub, principal: Principal, kind: RepoKind, repo_id: RepoId, rest: list[str], r: Request
) -> tuple[str, dict[str, Any]]:
    revision, _ = _split_revision(rest)
    at = hub.reads.resolve(principal, kind, repo_id, revision or None)
    number = r.query_params.get("p", "0")
    if not number.isdigit() or len(number) > 6:  # noqa: PLR2004
        raise InvalidInputError("the page number must be a small non-negative integer")
    history, more = hub.reads.history(at, offset=int(number) * HISTORY_PAGE, limit=HISTORY_PAGE)
    values = _frame(at, "commits")
    values.update(history=history, page_number=int(number), more=more)
    return "repo_commits.html", values


def _commit(
    hub: Hub, principal: Principal, kind: RepoKind, repo_id: RepoId, rest: list[str], _r: Request
) -> tuple[str, dict[str, Any]]:
    at = hub.reads.resolve(principal, kind, repo_id, rest[0])
    values = _frame(at, "commits", revision=at.commit.sha)
    values.update(changes=hub.reads.changes(at))
    return "repo_commit.html", values


def _refs(
    hub: Hub, principal: Principal, kind: RepoKind, repo_id: RepoId, rest: list[str], _r: Request
) -> tuple[str, dict[str, Any]]:
    if rest:
        raise InvalidInputError("the refs page takes no path")
    at = hub.reads.resolve(principal, kind, repo_id, None)
    refs = hub.repos.refs(principal, kind, repo_id)
    values = _frame(at, "refs")
    values.update(
        branches=[r for r in refs if r.kind is RefKind.BRANCH],
        tags=[r for r in refs if r.kind is RefKind.TAG],
    )
    return "repo_refs.html", values


def _lineage(
    hub: Hub, principal: Principal, kind: RepoKind, repo_id: RepoId, rest: list[str], r: Request
) -> tuple[str, dict[str, Any]]:
    if rest:
        raise InvalidInputError("the lineage page takes no path")
    revision = r.query_params.get("revision") or None
    at = hub.reads.resolve(principal, kind, repo_id, revision)
    up = hub.lineage.ancestors(principal, kind, repo_id, at.commit.sha)
    down = hub.lineage.descendants(principal, kind, repo_id)
    pages: dict[str, str] = {}
    for node in _nodes(up) + _nodes(down):
        if node.repo_id is not None:
            pages[str(node.repo_id)] = RepoLinks(node.kind, node.repo_id).home + "/lineage"
    values = _frame(at, "lineage")
    values.update(graph=lineage_graph.layout(up, down, pages), up=up, down=down, pages=pages)
    return "repo_lineage.html", values


def _nodes(node: LineageNode) -> list[LineageNode]:
    found = [node]
    for child in node.children:
        found.extend(_nodes(child))
    return found


def _licence(
    hub: Hub, principal: Principal, kind: RepoKind, repo_id: RepoId, rest: list[str], r: Request
) -> tuple[str, dict[str, Any]]:
    if rest:
        raise InvalidInputError("the licence page takes no path")
    revision = r.query_params.get("revision") or None
    at = hub.reads.resolve(principal, kind, repo_id, revision)
    report = hub.licensing.report(principal, kind, repo_id, at.commit.sha)
    values = _frame(at, "licence")
    values.update(report=report)
    return "repo_licence.html", values


def _provenance(
    hub: Hub, principal: Principal, kind: RepoKind, repo_id: RepoId, rest: list[str], r: Request
) -> tuple[str, dict[str, Any]]:
    if rest:
        raise InvalidInputError("the provenance page takes no path")
    revision = r.query_params.get("revision") or None
    at = hub.reads.resolve(principal, kind, repo_id, revision)
    view = (
        hub.provenance.view(principal, kind, repo_id, at.commit.sha)
        if kind is RepoKind.MODEL
        else None
    )
    values = _frame(at, "provenance")
    values.update(view=view)
    return "repo_provenance.html", values


def _curation(
    hub: Hub, principal: Principal, kind: RepoKind, repo_id: RepoId, rest: list[str], r: Request
) -> tuple[str, dict[str, Any]]:
    if rest:
        raise InvalidInputError("the co-building page takes no path")
    revision = r.query_params.get("revision") or None
    at = hub.reads.resolve(principal, kind, repo_id, revision)
    values = _frame(at, "curation")
    values.update(
        dataset=kind is RepoKind.DATASET, policy=None, report=None, contributions=[], jobs=[]
    )
    if kind is RepoKind.DATASET:
        try:
            report = hub.curation.report(principal, repo_id, at.commit.sha)
        except (NotFoundError, AccessDeniedError, InvalidInputError):
            report = None
        values.update(
            policy=hub.contributions.policy(principal, repo_id),
            report=report,
            contributions=hub.contributions.list(principal, repo_id),
            jobs=hub.curation.jobs_of(principal, repo_id)[:10],
        )
    return "repo_curation.html", values


_VIEWS: dict[str, View] = {
    "": _card,
    "tree": _tree,
    "blob": _blob,
    "commits": _commits,
    "commit": _commit,
    "refs": _refs,
    "lineage": _lineage,
    "licence": _licence,
    "provenance": _provenance,
    "curation": _curation,
}
