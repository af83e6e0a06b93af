"""SQL rows for lineage and licences: edges, reports per revision, policies, acceptances."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, insert, select
from sqlalchemy.orm import aliased

from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.lineage import (
    EdgeOrigin,
    Finding,
    LicenceAcceptance,
    LicenceReport,
    LineageEdge,
    PolicyAction,
    Relation,
    Severity,
)
from kaiyuan.core.models import Repo
from kaiyuan.storage.sql import tables as t
from kaiyuan.storage.sql.dialects import as_utc


class LineageRows:
    """Mixed into the SQL session; `_c` and `_engine` come from it."""

    _c: Connection
    _engine: Engine

    def set_lineage_edges(
        self, repo: Repo, commit: str, origin: EdgeOrigin, edges: list[LineageEdge]
    ) -> None:
        """The edges of one origin for a revision, replacing what was there.

        Parents are models (a card's `base_model`); one that no longer resolves is kept by name.
        """
        table = t.lineage_edges
        self._c.execute(
            delete(table).where(
                table.c.child_repo_pk == repo.pk,
                table.c.child_commit == commit,
                table.c.origin == origin.value,
            )
        )
        for edge in edges:
            parent_pk = None
            if edge.parent_repo is not None:
                parent_pk = self._c.execute(
                    select(t.repos.c.pk).where(
                        t.repos.c.kind == RepoKind.MODEL.value,
                        t.repos.c.namespace == edge.parent_repo.namespace,
                        t.repos.c.name == edge.parent_repo.name,
                    )
                ).scalar()
            self._c.execute(
                insert(table).values(
                    child_repo_pk=repo.pk,
                    child_commit=commit,
                    parent=edge.parent,
                    parent_kind=RepoKind.MODEL.value,
                    parent_repo_pk=parent_pk,
                    parent_commit=edge.parent_commit if parent_pk is not None else None,
                    relation=edge.relation.value,
                    origin=origin.value,
                    created_at=edge.created_at,
                )
            )

    def lineage_edges(self, repo: Repo, commit: str) -> list[LineageEdge]:
        """What a revision derives from, declared and measured, in the order they were written."""
        table = t.lineage_edges
        parent = aliased(t.repos)
        rows = self._c.execute(
            select(table, parent.c.namespace, parent.c.name)
            .select_from(table.outerjoin(parent, parent.c.pk == table.c.parent_repo_pk))
            .where(table.c.child_repo_pk == repo.pk, table.c.child_commit == commit)
            .order_by(table.c.pk)
        )
        return [_edge(row, repo.kind, repo.repo_id) for row in rows]

    def lineage_children(self, repo: Repo) -> list[LineageEdge]:
        """Edges into `repo` from the current revision (default branch head) of each child."""
        table = t.lineage_edges
        child = aliased(t.repos)
        rows = self._c.execute(
            select(
                table,
                child.c.kind.label("child_kind"),
                child.c.namespace.label("child_namespace"),
                child.c.name.label("child_name"),
            )
            .select_from(
                table.join(child, child.c.pk == table.c.child_repo_pk).join(
                    t.refs,
                    and_(
                        t.refs.c.repo_pk == child.c.pk,
                        t.refs.c.kind == "branch",
                        t.refs.c.name == child.c.default_branch,
                        t.refs.c.target == table.c.child_commit,
                    ),
                )
            )
            .where(table.c.parent_repo_pk == repo.pk)
            .order_by(child.c.namespace, child.c.name, table.c.pk)
        )
        return [
            _edge(
                row,
                RepoKind(row.child_kind),
                RepoId(row.child_namespace, row.child_name),
                parent_repo=repo.repo_id,
            )
            for row in rows
        ]

    def save_licence_report(self, repo: Repo, report: LicenceReport) -> None:
        table = t.licence_reports
        self._c.execute(
            delete(table).where(table.c.repo_pk == repo.pk, table.c.commit == report.commit)
        )
        self._c.execute(
            insert(table).values(
                repo_pk=repo.pk,
                commit=report.commit,
                licence=report.licence,
                facts=json.dumps(report.facts, sort_keys=True),
                findings=json.dumps([_finding_json(f) for f in report.findings]),
                catalog_version=report.catalog_version,
                created_at=report.created_at,
            )
        )

    def licence_report(self, repo: Repo, commit: str) -> LicenceReport | None:
        table = t.licence_reports
        row = self._c.execute(
            select(table).where(table.c.repo_pk == repo.pk, table.c.commit == commit)
        ).first()
        if row is None:
            return None
        facts = json.loads(row.facts)
        return LicenceReport(
            kind=repo.kind,
            repo_id=repo.repo_id,
            commit=row.commit,
            licence=row.licence,
            findings=tuple(_finding(item) for item in json.loads(row.findings)),
            catalog_version=row.catalog_version,
            created_at=as_utc(row.created_at),
            facts=facts if isinstance(facts, dict) else {},
        )

    def licence_policy(self, scope: str) -> dict[str, PolicyAction]:
        table = t.licence_policies
        rows = self._c.execute(select(table).where(table.c.scope == scope))
        return {row.check_id: PolicyAction(row.action) for row in rows}

    def set_licence_policy(self, scope: str, check: str, action: PolicyAction | None) -> None:
        """Set (or, with None, forget) what one check does in a scope."""
        table = t.licence_policies
        self._c.execute(delete(table).where(table.c.scope == scope, table.c.check_id == check))
        if action is not None:
            self._c.execute(insert(table).values(scope=scope, check_id=check, action=action.value))

    def add_licence_acceptance(self, repo: Repo, acceptance: LicenceAcceptance) -> None:
        self._c.execute(
            insert(t.licence_acceptances).values(
                repo_pk=repo.pk,
                user=acceptance.user,
                licence=acceptance.licence,
                licence_version=acceptance.licence_version,
                commit=acceptance.commit,
                request_id=acceptance.request_id,
                accepted_at=acceptance.accepted_at,
            )
        )

    def licence_acceptances(self, repo: Repo) -> list[LicenceAcceptance]:
        table = t.licence_acceptances
        rows = self._c.execute(
            select(table)
            .where(table.c.repo_pk == repo.pk)
            .order_by(table.c.accepted_at, table.c.pk)
        )
        return [
            LicenceAcceptance(
                user=row.user,
                licence=row.licence,
                licence_version=row.licence_version,
                commit=row.commit,
                accepted_at=as_utc(row.accepted_at),
                request_id=row.request_id,
            )
            for row in rows
        ]


def _edge(
    row: Any, child_kind: RepoKind, child: RepoId, parent_repo: RepoId | None = None
) -> LineageEdge:
    resolved = parent_repo
    if resolved is None and getattr(row, "namespace", None) is not None:
        resolved = RepoId(row.namespace, row.name)
    if row.parent_repo_pk is None:
        resolved = None
    return LineageEdge(
        child_kind=child_kind,
        child=child,
        child_commit=row.child_commit,
        parent=row.parent,
        relation=Relation(row.relation),
        origin=EdgeOrigin(row.origin),
        parent_repo=resolved,
        parent_commit=row.parent_commit,
        created_at=as_utc(row.created_at),
    )


def _finding_json(finding: Finding) -> dict[str, str | None]:
    return {
        "check": finding.check,
        "severity": finding.severity.value,
        "message": finding.message,
        "fix": finding.fix,
        "ancestor": finding.ancestor,
        "clause": finding.clause,
        "action": finding.action.value,
    }


def _finding(item: dict[str, Any]) -> Finding:
    return Finding(
        check=str(item["check"]),
        severity=Severity(item["severity"]),
        message=str(item["message"]),
        fix=str(item["fix"]),
        ancestor=item.get("ancestor"),
        clause=item.get("clause"),
        action=PolicyAction(item.get("action", "warn")),
    )
