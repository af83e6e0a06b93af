"""SQL rows for garbage collection: what is referenced, what is old, and deleting the rest."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, delete, select, text

from kaiyuan.core.models import XorbBrief
from kaiyuan.storage.sql import tables as t

_SPAN = struct.Struct("<I32sQB")
_BATCH = 500


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class CollectionRows:
    """Mixed into the SQL session; `_c` and `_engine` come from it."""

    _c: Connection
    _engine: Engine

    def lock_for_collection(self) -> None:
        """Keep writers of content records out until this transaction ends.

        SQLite writers already run one at a time (the session began with BEGIN IMMEDIATE).
        """
        if self._engine.dialect.name == "postgresql":
            self._c.execute(
                text("LOCK TABLE blobs, xorbs, xorb_chunks, xet_file_xorbs IN EXCLUSIVE MODE")
            )

    def content_ages(self) -> dict[str, tuple[datetime, bool]]:
        """Every content record: when it was recorded, and whether it is Xet-stored."""
        query = select(t.blobs.c.sha256, t.blobs.c.created_at, t.blobs.c.xet_hash)
        return {
            row.sha256: (_utc(row.created_at), row.xet_hash is not None)
            for row in self._c.execute(query)
        }

    def delete_contents(self, sha256s: Iterable[str]) -> None:
        wanted = sorted(set(sha256s))
        for i in range(0, len(wanted), _BATCH):
            batch = wanted[i : i + _BATCH]
            self._c.execute(delete(t.xet_file_xorbs).where(t.xet_file_xorbs.c.sha256.in_(batch)))
            self._c.execute(delete(t.blobs).where(t.blobs.c.sha256.in_(batch)))

    def xorbs_in_use(self) -> set[str]:
        """Xorbs some content record still reads."""
        query = select(t.xet_file_xorbs.c.xorb_hash).distinct()
        return {row.xorb_hash for row in self._c.execute(query)}

    def xorb_briefs(self) -> list[XorbBrief]:
        query = select(
            t.xorbs.c.xorb_hash, t.xorbs.c.pack_sha256, t.xorbs.c.spans, t.xorbs.c.created_at
        )
        briefs = []
        for row in self._c.execute(query):
            blobs = frozenset(
                _SPAN.unpack_from(row.spans, i)[1].hex()
                for i in range(0, len(row.spans), _SPAN.size)
            )
            briefs.append(XorbBrief(row.xorb_hash, row.pack_sha256, blobs, _utc(row.created_at)))
        return briefs

    def delete_xorbs(self, xorb_hashes: Iterable[str]) -> None:
        wanted = sorted(set(xorb_hashes))
        for i in range(0, len(wanted), _BATCH):
            batch = wanted[i : i + _BATCH]
            self._c.execute(delete(t.xorb_chunks).where(t.xorb_chunks.c.xorb_hash.in_(batch)))
            self._c.execute(delete(t.xet_file_xorbs).where(t.xet_file_xorbs.c.xorb_hash.in_(batch)))
            self._c.execute(delete(t.xorbs).where(t.xorbs.c.xorb_hash.in_(batch)))
