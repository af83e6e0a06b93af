"""Licence compliance on every push, reports per revision, policies, and local pre-push checks.

`review` runs inside the commit's transaction (it is the commit service's review hook): it
records the revision's declared lineage edges and its licence report, or refuses the commit when
the policy rejects a finding, in which case nothing of the commit is stored.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kaiyuan.core.errors import (
    AccessDeniedError,
    InvalidInputError,
    PolicyViolationError,
    UserNotFoundError,
)
from kaiyuan.core.ids import RepoId, RepoKind, validate_namespace
from kaiyuan.core.lineage import (
    EdgeOrigin,
    Finding,
    LicenceReport,
    LineageEdge,
    PolicyAction,
    Severity,
    validate_check_id,
)
from kaiyuan.core.models import Commit, FileEntry, Gating, Principal, RefKind, Repo, Scope
from kaiyuan.core.ports import MetadataSession, MetadataStore
from kaiyuan.services import access, cards, revisions, trees
from kaiyuan.services.clock import Clock, utc_now
from kaiyuan.services.contents import ContentStore
from kaiyuan.services.licensing import openness, policy
from kaiyuan.services.licensing.catalog import Licence, LicenceCatalog
from kaiyuan.services.licensing.checks import Ancestor, Subject, evaluate, licence_of
from kaiyuan.services.licensing.facts import MAX_LEGAL_TEXT, RevisionFacts, revision_facts
from kaiyuan.services.lineage import MAX_DEPTH, Declaration, declaration, resolve_edges

MAX_LEGAL_FILES = 8
MAX_ANCESTORS = 256


@dataclass(frozen=True, slots=True)
class Draft:
    """A revision not pushed yet (a local folder): its card and legal files, by name."""

    kind: RepoKind
    repo_id: RepoId  # where it is meant to go
    card: str
    paths: tuple[str, ...]
    texts: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Revision:
    facts: RevisionFacts
    declaration: Declaration
    texts: dict[str, str]
    body: str
    card: dict[str, Any]
    paths: tuple[str, ...]


class LicensingService:
    def __init__(
        self,
        store: MetadataStore,
        contents: ContentStore,
        cache: trees.TreeCache,
        catalog: Callable[[], LicenceCatalog],
        *,
        max_card_bytes: int,
        external_models: tuple[str, ...] = (),
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._contents = contents
        self._cache = cache
        self._catalog = catalog
        self._max_card = max_card_bytes
        self._external = external_models
        self._clock = clock

    @property
    def catalog(self) -> LicenceCatalog:
        return self._catalog()

    # --- the commit hook ---------------------------------------------------------------------
    def review(
        self,
        session: MetadataSession,
        principal: Principal,
        repo: Repo,
        branch: str,
        files: dict[str, FileEntry],
        commit: Commit,
    ) -> None:
        """Record the new revision's lineage and report; PolicyViolation when it is rejected.

        On the default branch, a card that says `gated: auto|manual|false` sets the gating.
        """
        revision = self._read_revision(repo, files)  # the card and licence files, read once
        if branch == repo.default_branch and "gated" in revision.card:
            repo, revision = self._gate_from_card(session, repo, revision)
        report, edges = self._assess(session, principal, repo, revision, commit.sha)
        if report.rejected:
            raise PolicyViolationError(rejection_message(report))
        session.set_lineage_edges(repo, commit.sha, EdgeOrigin.DECLARED, edges)
        session.save_licence_report(repo, report)

    def _gate_from_card(
        self, session: MetadataSession, repo: Repo, revision: _Revision
    ) -> tuple[Repo, _Revision]:
        mode = revision.card["gated"]
        gated = {"auto": Gating.AUTO, True: Gating.AUTO, "manual": Gating.MANUAL}.get(mode)
        if gated == repo.gated:
            return repo, revision
        session.set_gated(repo, gated)
        facts = dataclasses.replace(revision.facts, gated=gated is not None)
        return dataclasses.replace(repo, gated=gated), dataclasses.replace(revision, facts=facts)

    # --- reports -----------------------------------------------------------------------------
    def report(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, revision: str | None
    ) -> LicenceReport:
        """The report of a revision.

        One pushed before the hub checked licences is assessed now (and kept), as the policy
        stands today.
        """
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            commit = revisions.resolve(session, repo, revision or repo.default_branch)
            stored = session.licence_report(repo, commit.sha)
        if stored is not None:
            return stored
        with self._store.session(write=True) as session:
            files = trees.flatten(session, self._cache, commit.tree)
            # Judged as the repository's own members see the hub (the pusher is not known any
            # more), so what is stored does not depend on who happened to ask first.
            owners = Principal(repo.repo_id.namespace, Scope.READ, (repo.repo_id.namespace,))
            read = self._read_revision(repo, files)
            report, edges = self._assess(session, owners, repo, read, commit.sha)
            if not session.lineage_edges(repo, commit.sha):
                session.set_lineage_edges(repo, commit.sha, EdgeOrigin.DECLARED, edges)
            session.save_licence_report(repo, report)
        return report

    def reassess(
        self, session: MetadataSession, repo: Repo, commit: Commit, extra: list[Finding]
    ) -> LicenceReport:
        """Judge a revision again with its measured ancestry and the provenance findings.

        Called by the fingerprint worker after the push: measured parents (those the card does
        not already declare) join the declared ones, so an undeclared derivative inherits its
        ancestors' obligations. Nothing is refused any more; a `reject` is reported as such.
        """
        files = trees.flatten(session, self._cache, commit.tree)
        owners = Principal(repo.repo_id.namespace, Scope.READ, (repo.repo_id.namespace,))
        revision = self._read_revision(repo, files)
        edges = session.lineage_edges(repo, commit.sha)
        declared = [e for e in edges if e.origin is EdgeOrigin.DECLARED]
        if not declared and session.licence_report(repo, commit.sha) is None:
            declared = self._declared_now(session, owners, repo, commit.sha)
        named = {e.parent_repo for e in declared if e.parent_repo is not None}
        measured = [
            e for e in edges if e.origin is EdgeOrigin.MEASURED and e.parent_repo not in named
        ]
        report = self._judge(
            session, owners, repo.kind, repo.repo_id, revision, declared + measured, commit.sha
        )
        judged = policy.judge(extra, self._actions(session, repo.repo_id.namespace))
        report = dataclasses.replace(report, findings=(*report.findings, *judged))
        session.save_licence_report(repo, report)
        return report

    def check_draft(self, principal: Principal, draft: Draft) -> LicenceReport:
        """The report a push of `draft` would get, without storing anything.

        A card whose metadata cannot be read is a finding here (the push would be refused).
        """
        unreadable = None
        try:
            card = cards.parse_card(draft.card) or {}
        except InvalidInputError as exc:
            card, unreadable = {}, exc.message
        with self._store.session() as session:
            repo = session.get_repo(draft.kind, draft.repo_id)
            gated = repo is not None and repo.gated is not None
            facts = revision_facts(
                draft.repo_id, card, cards.card_body(draft.card), draft.paths, gated=gated
            )
            found = _declaration(draft.kind, card, draft.repo_id, draft.paths)
            revision = _Revision(
                facts, found, draft.texts, cards.card_body(draft.card), card, draft.paths
            )
            # as if pushed now; the repository itself may not exist yet
            child = (draft.kind, draft.repo_id)
            edges = resolve_edges(session, principal, child, "", found, self._clock())
            report = self._judge(session, principal, draft.kind, draft.repo_id, revision, edges, "")
        if unreadable is None:
            return report
        refused = Finding(
            "LIC-001",
            Severity.ERROR,
            f"README.md's metadata cannot be read, and a push would be refused: {unreadable}",
            "fix the YAML front matter of README.md",
            action=PolicyAction.REJECT,
        )
        return dataclasses.replace(report, findings=(refused, *report.findings))

    # --- policy ------------------------------------------------------------------------------
    def policy(self, scope: str = policy.HUB_SCOPE) -> dict[str, PolicyAction]:
        """The actions set in a scope: the hub ('') or an organisation (NotFound if none)."""
        with self._store.session() as session:
            if scope != policy.HUB_SCOPE:
                _organisation(session, scope)
            return session.licence_policy(scope)

    def set_policy(
        self,
        principal: Principal | None,
        scope: str,
        changes: dict[str, PolicyAction | None],
    ) -> None:
        """Set one check for the hub or for an organisation; `None` returns to the default.

        The hub's policy is the operator's (principal None: the command line); an organisation's
        is its members' with a write token.
        """
        checked = {validate_check_id(check): action for check, action in changes.items()}
        with self._store.session(write=True) as session:
            if scope != policy.HUB_SCOPE:
                _organisation(session, scope)
            if principal is not None:
                if scope == policy.HUB_SCOPE:
                    raise AccessDeniedError("the hub's policy is set by its operator")
                access.require_write(principal, scope)
            for check, action in checked.items():
                session.set_licence_policy(scope, check, action)

    def effective_policy(self, namespace: str) -> dict[str, PolicyAction]:
        with self._store.session() as session:
            return self._actions(session, namespace)

    # --- assessment --------------------------------------------------------------------------
    def _assess(
        self,
        session: MetadataSession,
        principal: Principal,
        repo: Repo,
        revision: _Revision,
        commit: str,
    ) -> tuple[LicenceReport, list[LineageEdge]]:
        child = (repo.kind, repo.repo_id)
        edges = resolve_edges(
            session, principal, child, commit, revision.declaration, self._clock()
        )
        report = self._judge(session, principal, repo.kind, repo.repo_id, revision, edges, commit)
        return report, edges

    def _judge(
        self,
        session: MetadataSession,
        principal: Principal,
        kind: RepoKind,
        repo_id: RepoId,
        revision: _Revision,
        edges: list[LineageEdge],
        commit: str,
    ) -> LicenceReport:
        catalog = self._catalog()
        own = licence_of(revision.facts, catalog)
        ancestors = tuple(self._ancestry(session, principal, edges))
        known = [
            (a.repo, lic)
            for a in ancestors
            if a.facts is not None and (lic := licence_of(a.facts, catalog)) is not None
        ]
        found = openness.assess(
            revision.paths,
            revision.card,
            revision.body,
            licence_of(revision.facts, catalog),
            revision.facts.licence,
            known,
        )
        subject = Subject(
            kind=kind,
            facts=revision.facts,
            declaration=revision.declaration,
            ancestors=ancestors,
            texts=revision.texts,
            body=revision.body,
            datasets=tuple(self._datasets(session, principal, revision.facts.datasets)),
            external_allowed=self._is_external,
            openness=_openness_note(found, licence_of(revision.facts, catalog), revision.facts),
        )
        findings = policy.judge(
            evaluate(subject, catalog), self._actions(session, repo_id.namespace)
        )
        return LicenceReport(
            kind=kind,
            repo_id=repo_id,
            commit=commit,
            licence=revision.facts.declared,
            findings=tuple(findings),
            catalog_version=catalog.version,
            created_at=self._clock(),
            facts={
                **revision.facts.as_json(),
                "openness": found.as_json(),
                "licence_version": own.version if own is not None else None,
            },
        )

    def _actions(self, session: MetadataSession, namespace: str) -> dict[str, PolicyAction]:
        account = session.get_account(namespace)
        org = session.licence_policy(namespace) if account is not None and account.is_org else None
        return policy.effective(session.licence_policy(policy.HUB_SCOPE), org)

    def _is_external(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self._external)

    def _read_revision(self, repo: Repo, files: dict[str, FileEntry]) -> _Revision:
        card_entry = files.get(cards.CARD_PATH)
        text = self._read(card_entry, self._max_card) if card_entry else ""
        try:
            card = cards.parse_card(text) or {}
        except InvalidInputError:
            card = {}  # an old card the parser now refuses: judged as having no metadata
        body = cards.card_body(text)
        facts = revision_facts(repo.repo_id, card, body, files, gated=repo.gated is not None)
        texts = {
            name: self._read(files[name], MAX_LEGAL_TEXT)
            for name in facts.legal_files[:MAX_LEGAL_FILES]
        }
        found = _declaration(repo.kind, card, repo.repo_id, files)
        return _Revision(facts, found, texts, body, card, tuple(files))

    def _read(self, entry: FileEntry, limit: int) -> str:
        data = b"".join(self._contents.open(entry.sha256, 0, min(entry.size, limit)))
        return data.decode("utf-8", "replace")

    def _facts_at(self, session: MetadataSession, repo: Repo, commit: str) -> RevisionFacts:
        """A revision's facts: from its stored report, else read from its files now."""
        stored = session.licence_report(repo, commit)
        if stored is not None and stored.facts:
            return RevisionFacts.from_json(stored.facts)
        found = session.get_commit(repo, commit)
        if found is None:
            return RevisionFacts(repo=str(repo.repo_id))
        files = trees.flatten(session, self._cache, found.tree)
        return self._read_revision(repo, files).facts

    def _ancestry(
        self, session: MetadataSession, principal: Principal, edges: list[LineageEdge]
    ) -> list[Ancestor]:
        """Every ancestor breadth-first (nearest first), each once, as the caller may see it."""
        result: list[Ancestor] = []
        seen: set[tuple[str, str | None]] = set()
        queue = deque((edge, 1, edge.relation.copies_parent) for edge in edges)
        while queue and len(result) < MAX_ANCESTORS:
            edge, depth, copies = queue.popleft()
            key = (edge.parent, edge.parent_commit)
            if key in seen:
                continue
            seen.add(key)
            parent = (
                session.get_repo(RepoKind.MODEL, edge.parent_repo) if edge.parent_repo else None
            )
            if (
                parent is None
                or edge.parent_commit is None
                or not access.can_read(principal, parent)
            ):
                result.append(Ancestor(edge.parent, None, edge.relation, depth, copies))
                continue
            facts = self._facts_at(session, parent, edge.parent_commit)
            result.append(Ancestor(str(parent.repo_id), facts, edge.relation, depth, copies))
            if depth >= MAX_DEPTH:
                continue
            above = session.lineage_edges(parent, edge.parent_commit)
            if not above and session.licence_report(parent, edge.parent_commit) is None:
                above = self._declared_now(session, principal, parent, edge.parent_commit)
            for upper in above:
                queue.append((upper, depth + 1, copies and upper.relation.copies_parent))
        return result

    def _declared_now(
        self, session: MetadataSession, principal: Principal, repo: Repo, commit: str
    ) -> list[LineageEdge]:
        """Edges of a revision pushed before lineage was recorded, read from its card now."""
        found = session.get_commit(repo, commit)
        if found is None:
            return []
        files = trees.flatten(session, self._cache, found.tree)
        revision = self._read_revision(repo, files)
        child = (repo.kind, repo.repo_id)
        return resolve_edges(session, principal, child, commit, revision.declaration, self._clock())

    def _datasets(
        self, session: MetadataSession, principal: Principal, names: tuple[str, ...]
    ) -> list[tuple[str, RevisionFacts | None]]:
        found: list[tuple[str, RevisionFacts | None]] = []
        for name in names[:64]:
            try:
                dataset = session.get_repo(RepoKind.DATASET, RepoId.parse(name))
            except InvalidInputError:
                dataset = None
            if dataset is None or not access.can_read(principal, dataset):
                found.append((name, None))
                continue
            ref = session.get_ref(dataset, RefKind.BRANCH, dataset.default_branch)
            found.append((name, self._facts_at(session, dataset, ref.target) if ref else None))
        return found


def _declaration(
    kind: RepoKind, card: dict[str, Any], repo_id: RepoId, paths: Iterable[str]
) -> Declaration:
    if kind is not RepoKind.MODEL:
        return Declaration((), None, relation_declared=False)
    return declaration(card, repo_id, paths)


def _organisation(session: MetadataSession, name: str) -> None:
    validate_namespace(name)
    account = session.get_account(name)
    if account is None or not account.is_org:
        raise UserNotFoundError(f"no organisation is named {name!r}")


def rejection_message(report: LicenceReport) -> str:
    count = len(report.rejected)
    lines = [f"the push breaks licence obligations that this hub's policy rejects ({count}):"]
    lines.extend(_describe(finding) for finding in report.rejected)
    return "\n".join(lines)


def _describe(finding: Finding) -> str:
    source = f" [{finding.ancestor}]" if finding.ancestor else ""
    return f"- {finding.check}{source}: {finding.message}. Fix: {finding.fix}"


def _openness_note(
    found: openness.Openness, licence: Licence | None, facts: RevisionFacts
) -> str | None:
    """The LIC-015 note, only when the declared licence overstates the openness.

    That is: the licence is open, but an ancestor's licence still restricts the weights. The full
    assessment is in every report either way.
    """
    if found.restricted_by is None or not openness.is_open(licence, facts.licence):
        return None
    return (
        f"the licence {facts.declared} is open, but the model derives from "
        f"{found.restricted_by}, whose licence restricts use: the weights are no more open "
        f"than that ({found.summary})"
    )
