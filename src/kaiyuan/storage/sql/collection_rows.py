"""SQL rows for garbage collection: what is referenced, what is old, and deleting the rest."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, func, or_, select, text

from kaiyuan.core.models import XorbBrief
from kaiyuan.storage.sql import tables as t
from kaiyuan.storage.sql.dialects import as_utc

_SPAN = struct.Struct("<I32sQB")
_BATCH = 500


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
            row.sha256: (as_utc(row.created_at), row.xet_hash is not None)
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
            briefs.append(XorbBrief(row.xorb_hash, row.pack_sha256, blobs, as_utc(row.created_at)))
        return briefs

    def delete_xorbs(self, xorb_hashes: Iterable[str]) -> None:
        wanted = sorted(set(xorb_hashes))
        for i in range(0, len(wanted), _BATCH):
            batch = wanted[i : i + _BATCH]
            self._c.execute(delete(t.xorb_chunks).where(t.xorb_chunks.c.xorb_hash.in_(batch)))
            self._c.execute(delete(t.xet_file_xorbs).where(t.xet_file_xorbs.c.xorb_hash.in_(batch)))
            self._c.execute(delete(t.xorbs).where(t.xorbs.c.xorb_hash.in_(batch)))


class ConsistencyRows:
    """Queries behind `kaiyuan admin fsck`: references that point at nothing."""

    _c: Connection

    def dangling_chunk_index(self, *, repair: bool) -> int:
        """Chunk-index rows whose xorb is gone (removed when `repair`)."""
        missing = ~t.xorb_chunks.c.xorb_hash.in_(select(t.xorbs.c.xorb_hash))
        count = self._c.execute(select(func.count()).where(missing)).scalar_one()
        if repair and count:
            self._c.execute(delete(t.xorb_chunks).where(missing))
        return int(count)

    def dangling_file_xorbs(self, *, repair: bool) -> int:
        """File-to-xorb rows whose content or xorb is gone (removed when `repair`)."""
        missing = or_(
            ~t.xet_file_xorbs.c.xorb_hash.in_(select(t.xorbs.c.xorb_hash)),
            ~t.xet_file_xorbs.c.sha256.in_(select(t.blobs.c.sha256)),
        )
        count = self._c.execute(select(func.count()).where(missing)).scalar_one()
        if repair and count:
            self._c.execute(delete(t.xet_file_xorbs).where(missing))
        return int(count)

    def tree_files_without_content(self, limit: int) -> list[tuple[str, str, str]]:
        """(tree, file name, sha256) of tree entries whose content record is missing."""
        e = t.tree_entries.c
        query = (
            select(e.tree_sha, e.name, e.sha256)
            .where(e.is_dir.is_(False), e.sha256.is_not(None))
            .where(~e.sha256.in_(select(t.blobs.c.sha256)))
            .limit(limit)
        )
        return [(row.tree_sha, row.name, row.sha256) for row in self._c.execute(query)]

    def refs_without_commit(self, limit: int) -> list[tuple[int, str, str]]:
        """(repo pk, ref name, target) of refs that point at no stored commit."""
        r, c = t.refs.c, t.commits.c
        known = select(c.sha).where(c.repo_pk == r.repo_pk)
        query = select(r.repo_pk, r.name, r.target).where(~r.target.in_(known)).limit(limit)
        return [(row.repo_pk, row.name, row.target) for row in self._c.execute(query)]
