"""SQL rows for trusted distribution: scan verdicts per content, signatures per revision."""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import Connection, delete, insert, select

from kaiyuan.core.models import Repo
from kaiyuan.core.scanning import (
    FileScan,
    ImportSafety,
    PickleImport,
    PublisherKey,
    RevisionSignature,
    ScanStatus,
)
from kaiyuan.storage.sql import tables as t
from kaiyuan.storage.sql.dialects import as_utc

_BATCH = 500  # sha256s per IN (...) query


class ScanRows:
    """Mixed into the SQL session; `_c` comes from it."""

    _c: Connection

    def save_scan(self, scan: FileScan) -> None:
        """Store the verdict on a content, replacing an older one."""
        if scan.scanned_at is None:
            raise ValueError("a stored scan needs its time")
        table = t.file_scans
        self._c.execute(delete(table).where(table.c.sha256 == scan.sha256))
        self._c.execute(
            insert(table).values(
                sha256=scan.sha256,
                scanner=scan.scanner,
                status=scan.status.value,
                format=scan.format,
                findings=json.dumps(list(scan.findings)),
                imports=json.dumps(
                    [[i.module, i.name, i.safety.value, i.member] for i in scan.imports]
                ),
                scanned_at=scan.scanned_at,
            )
        )

    def scans(self, sha256s: Iterable[str]) -> dict[str, FileScan]:
        """The stored verdicts on these contents (those without one are left out)."""
        wanted = sorted(set(sha256s))
        table = t.file_scans
        found: dict[str, FileScan] = {}
        for start in range(0, len(wanted), _BATCH):
            rows = self._c.execute(
                select(table).where(table.c.sha256.in_(wanted[start : start + _BATCH]))
            )
            for row in rows:
                found[row.sha256] = FileScan(
                    row.sha256,
                    ScanStatus(row.status),
                    row.format,
                    tuple(json.loads(row.findings)),
                    tuple(
                        PickleImport(m, n, ImportSafety(s), member)
                        for m, n, s, member in json.loads(row.imports)
                    ),
                    row.scanner,
                    as_utc(row.scanned_at),
                )
        return found

    def save_signature(self, repo: Repo, signature: RevisionSignature) -> bool:
        """Store a revision's bundle unless that signer's is stored already; whether it was."""
        table = t.revision_signatures
        if self.signature(repo, signature.commit, signature.signer) is not None:
            return False
        self._c.execute(
            insert(table).values(
                repo_pk=repo.pk,
                commit=signature.commit,
                signer=signature.signer,
                key_id=signature.key_id,
                bundle=signature.bundle.decode("utf-8"),
                created_at=signature.created_at,
            )
        )
        return True

    def signature(self, repo: Repo, commit: str, signer: str) -> RevisionSignature | None:
        table = t.revision_signatures
        row = self._c.execute(
            select(table).where(
                table.c.repo_pk == repo.pk, table.c.commit == commit, table.c.signer == signer
            )
        ).first()
        if row is None:
            return None
        return RevisionSignature(
            row.commit, row.signer, row.key_id, row.bundle.encode("utf-8"), as_utc(row.created_at)
        )

    def add_publisher_key(self, key: PublisherKey) -> bool:
        """Register a key for a namespace; False if it already is."""
        table = t.publisher_keys
        found = self._c.execute(
            select(table.c.key_id).where(
                table.c.namespace == key.namespace, table.c.key_id == key.key_id
            )
        ).first()
        if found is not None:
            return False
        self._c.execute(
            insert(table).values(
                namespace=key.namespace,
                key_id=key.key_id,
                public_pem=key.public_pem.decode("ascii"),
                added_by=key.added_by,
                added_at=key.added_at,
            )
        )
        return True

    def publisher_keys(self, namespace: str) -> list[PublisherKey]:
        table = t.publisher_keys
        rows = self._c.execute(
            select(table).where(table.c.namespace == namespace).order_by(table.c.added_at)
        )
        return [
            PublisherKey(
                row.namespace,
                row.key_id,
                row.public_pem.encode("ascii"),
                row.added_by,
                as_utc(row.added_at),
            )
            for row in rows
        ]

    def remove_publisher_key(self, namespace: str, key_id: str) -> bool:
        table = t.publisher_keys
        result = self._c.execute(
            delete(table).where(table.c.namespace == namespace, table.c.key_id == key_id)
        )
        return result.rowcount == 1
