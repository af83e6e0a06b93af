"""SQL rows for gated repositories: the gating mode and users' access requests."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from kaiyuan.core.models import AccessRequest, AccessStatus, Gating, Repo
from kaiyuan.storage.sql import tables as t
from kaiyuan.storage.sql.dialects import as_utc


class GatingRows:
    """Mixed into the SQL session; `_c` and `_engine` come from it."""

    _c: Connection
    _engine: Engine

    def set_gated(self, repo: Repo, gated: Gating | None) -> None:
        value = gated.value if gated is not None else None
        self._c.execute(update(t.repos).where(t.repos.c.pk == repo.pk).values(gated=value))

    def get_access_request(self, repo: Repo, user: str) -> AccessRequest | None:
        table = t.access_requests
        row = self._c.execute(
            select(table).where(table.c.repo_pk == repo.pk, table.c.user == user)
        ).first()
        return _request(row) if row else None

    def save_access_request(self, repo: Repo, request: AccessRequest) -> None:
        """Insert or replace the user's request for this repository."""
        table = t.access_requests
        self._c.execute(
            delete(table).where(table.c.repo_pk == repo.pk, table.c.user == request.user)
        )
        self._c.execute(
            insert(table).values(
                repo_pk=repo.pk,
                user=request.user,
                request_id=request.request_id,
                status=request.status.value,
                fields=json.dumps(request.fields),
                requested_at=request.requested_at,
                decided_at=request.decided_at,
                decided_by=request.decided_by,
                reason=request.reason,
            )
        )

    def access_requests(self, repo: Repo, status: AccessStatus) -> list[AccessRequest]:
        table = t.access_requests
        rows = self._c.execute(
            select(table)
            .where(table.c.repo_pk == repo.pk, table.c.status == status.value)
            .order_by(table.c.requested_at, table.c.user)
        )
        return [_request(row) for row in rows]


def _request(row: Any) -> AccessRequest:
    fields = json.loads(row.fields)
    return AccessRequest(
        request_id=row.request_id,
        user=row.user,
        status=AccessStatus(row.status),
        fields={str(k): str(v) for k, v in fields.items()} if isinstance(fields, dict) else {},
        requested_at=as_utc(row.requested_at),
        decided_at=as_utc(row.decided_at) if row.decided_at else None,
        decided_by=row.decided_by,
        reason=row.reason,
    )
