"""SQL rows for Xet storage: xorbs with their chunk tables, the chunk index, Xet-stored content."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, Engine, and_, func, insert, select, update

from kaiyuan.core.digests import xet_hex, xet_raw
from kaiyuan.core.errors import ConflictError
from kaiyuan.core.models import Codec, StoredXorb, XetFile, XetTerm, XorbSpan
from kaiyuan.storage.sql import tables as t
from kaiyuan.storage.sql.dialects import insert_ignoring_duplicates

_CHUNK = struct.Struct("<32sII")  # chunk hash, raw end, stored end
_SPAN = struct.Struct("<I32sQB")  # first chunk, blob sha256, offset, codec
_TERM = struct.Struct("<32sII")
_BATCH = 500  # stays under every backend's bound-parameter limit


def _batches(items: list[bytes] | list[str]) -> Iterable[list[bytes] | list[str]]:
    for i in range(0, len(items), _BATCH):
        yield items[i : i + _BATCH]


class XetRows:
    """Mixed into the SQL session; `_c` and `_engine` come from it."""

    _c: Connection
    _engine: Engine

    def add_xorb(self, xorb: StoredXorb, now: datetime) -> bool:
        """Record a xorb and index its chunks; False (and nothing changed) if it was known."""
        if self._c.execute(
            select(t.xorbs.c.xorb_hash).where(t.xorbs.c.xorb_hash == xorb.xorb_hash)
        ).first():
            return False
        reused = {s.blob_sha256 for s in xorb.spans} - {xorb.pack_sha256}
        if reused:
            self._require_packs(reused)
        table = b"".join(
            _CHUNK.pack(h, end, stored)
            for h, end, stored in zip(
                xorb.chunk_hashes, xorb.chunk_ends, xorb.stored_ends, strict=True
            )
        )
        spans = b"".join(
            _SPAN.pack(span.first, bytes.fromhex(span.blob_sha256), span.offset, span.codec)
            for span in xorb.spans
        )
        self._c.execute(
            insert(t.xorbs).values(
                xorb_hash=xorb.xorb_hash,
                pack_sha256=xorb.pack_sha256,
                pack_bytes=xorb.pack_bytes,
                chunk_count=len(xorb.chunk_hashes),
                raw_bytes=xorb.raw_bytes,
                chunks=table,
                spans=spans,
                created_at=now,
            )
        )
        rows = [
            {"chunk_hash": h, "xorb_hash": xorb.xorb_hash, "chunk_index": i}
            for i, h in enumerate(xorb.chunk_hashes)
        ]
        statement = insert_ignoring_duplicates(self._engine, t.xorb_chunks)
        for i in range(0, len(rows), _BATCH):
            self._c.execute(statement, rows[i : i + _BATCH])
        return True

    def _require_packs(self, packs: set[str]) -> None:
        # FOR SHARE (PostgreSQL): garbage collection cannot delete these until this commits.
        query = (
            select(t.xorbs.c.pack_sha256)
            .where(t.xorbs.c.pack_sha256.in_(sorted(packs)))
            .with_for_update(read=True)
        )
        found = {row.pack_sha256 for row in self._c.execute(query)}
        if found != packs:
            raise ConflictError("stored chunks this upload reuses were just collected; retry it")

    def _require_xorbs(self, names: set[str]) -> None:
        wanted = sorted(names)
        found: set[str] = set()
        for i in range(0, len(wanted), _BATCH):
            query = (
                select(t.xorbs.c.xorb_hash)
                .where(t.xorbs.c.xorb_hash.in_(wanted[i : i + _BATCH]))
                .with_for_update(read=True)
            )
            found.update(row.xorb_hash for row in self._c.execute(query))
        if found != names:
            raise ConflictError("xorbs this file reads were just collected; upload it again")

    def get_xorbs(self, xorb_hashes: Iterable[str]) -> dict[str, StoredXorb]:
        wanted = sorted(set(xorb_hashes))
        found: dict[str, StoredXorb] = {}
        for batch in _batches(wanted):
            query = select(t.xorbs).where(t.xorbs.c.xorb_hash.in_(batch))
            for row in self._c.execute(query):
                pairs = [
                    _CHUNK.unpack_from(row.chunks, i)
                    for i in range(0, len(row.chunks), _CHUNK.size)
                ]
                spans = tuple(
                    XorbSpan(first, blob.hex(), offset, Codec(codec))
                    for first, blob, offset, codec in (
                        _SPAN.unpack_from(row.spans, i)
                        for i in range(0, len(row.spans), _SPAN.size)
                    )
                )
                found[row.xorb_hash] = StoredXorb(
                    row.xorb_hash,
                    tuple(h for h, _, _ in pairs),
                    tuple(end for _, end, _ in pairs),
                    tuple(stored for _, _, stored in pairs),
                    spans,
                    row.pack_sha256,
                    row.pack_bytes,
                )
        return found

    def find_chunks(self, chunk_hashes: Iterable[bytes]) -> dict[bytes, tuple[str, int]]:
        """For each known chunk: the xorb holding it and its index there."""
        wanted = sorted(set(chunk_hashes))
        found: dict[bytes, tuple[str, int]] = {}
        for batch in _batches(wanted):
            query = select(t.xorb_chunks).where(t.xorb_chunks.c.chunk_hash.in_(batch))
            for row in self._c.execute(query):
                found[bytes(row.chunk_hash)] = (row.xorb_hash, row.chunk_index)
        return found

    def add_xet_file(self, file: XetFile, now: datetime) -> None:
        """Record content as Xet-stored; content already stored that way keeps its first form."""
        terms = b"".join(_TERM.pack(xet_raw(x.xorb_hash), x.start, x.end) for x in file.terms)
        self._require_xorbs({x.xorb_hash for x in file.terms})
        row = self._c.execute(
            select(t.blobs.c.xet_hash).where(t.blobs.c.sha256 == file.sha256)
        ).first()
        if row is None:
            self._c.execute(
                insert_ignoring_duplicates(self._engine, t.blobs).values(
                    sha256=file.sha256,
                    size=file.size,
                    created_at=now,
                    xet_hash=file.file_hash,
                    terms=terms,
                )
            )
        elif row.xet_hash is None:
            self._c.execute(
                update(t.blobs)
                .where(and_(t.blobs.c.sha256 == file.sha256, t.blobs.c.xet_hash.is_(None)))
                .values(xet_hash=file.file_hash, terms=terms)
            )
        else:
            return
        rows = [{"xorb_hash": h, "sha256": file.sha256} for h in {x.xorb_hash for x in file.terms}]
        statement = insert_ignoring_duplicates(self._engine, t.xet_file_xorbs)
        for i in range(0, len(rows), _BATCH):
            self._c.execute(statement, rows[i : i + _BATCH])

    def related_xorbs(self, xorb_hash: str, limit: int) -> list[str]:
        """Xorbs used by the same contents as `xorb_hash` (itself first), at most `limit`."""
        owners = (
            select(t.xet_file_xorbs.c.sha256)
            .where(t.xet_file_xorbs.c.xorb_hash == xorb_hash)
            .limit(16)
        )
        query = (
            select(t.xet_file_xorbs.c.xorb_hash)
            .where(t.xet_file_xorbs.c.sha256.in_(owners.scalar_subquery()))
            .distinct()
            .limit(limit)
        )
        found = [row.xorb_hash for row in self._c.execute(query) if row.xorb_hash != xorb_hash]
        return [xorb_hash, *found][:limit]

    def get_xet_file(self, sha256: str) -> XetFile | None:
        row = self._c.execute(select(t.blobs).where(t.blobs.c.sha256 == sha256)).first()
        return _file(row) if row is not None and row.xet_hash is not None else None

    def find_xet_file(self, file_hash: str) -> XetFile | None:
        row = self._c.execute(select(t.blobs).where(t.blobs.c.xet_hash == file_hash)).first()
        return _file(row) if row is not None else None

    def xet_hashes(self, sha256s: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(sha256s))
        found: dict[str, str] = {}
        for batch in _batches(wanted):
            query = select(t.blobs.c.sha256, t.blobs.c.xet_hash).where(
                and_(t.blobs.c.sha256.in_(batch), t.blobs.c.xet_hash.is_not(None))
            )
            found.update({row.sha256: row.xet_hash for row in self._c.execute(query)})
        return found


class UsageRows:
    """Queries behind storage accounting."""

    _c: Connection

    def namespace_repo_pks(self, namespace: str) -> list[int]:
        query = select(t.repos.c.pk).where(t.repos.c.namespace == namespace)
        return [row.pk for row in self._c.execute(query)]

    def repo_object_digests(self, repo_pks: Iterable[int] | None) -> set[str]:
        """Contents held by these repositories (every repository when None)."""
        query = select(t.repo_objects.c.sha256).distinct()
        if repo_pks is not None:
            wanted = sorted(set(repo_pks))
            if not wanted:
                return set()
            found: set[str] = set()
            for i in range(0, len(wanted), _BATCH):
                batch = query.where(t.repo_objects.c.repo_pk.in_(wanted[i : i + _BATCH]))
                found.update(row.sha256 for row in self._c.execute(batch))
            return found
        return {row.sha256 for row in self._c.execute(query)}

    def contents(self, sha256s: Iterable[str]) -> dict[str, tuple[int, XetFile | None]]:
        """Size and (for Xet-stored content) the file record of each known content."""
        wanted = sorted(set(sha256s))
        found: dict[str, tuple[int, XetFile | None]] = {}
        for batch in _batches(wanted):
            for row in self._c.execute(select(t.blobs).where(t.blobs.c.sha256.in_(batch))):
                found[row.sha256] = (row.size, _file(row) if row.xet_hash is not None else None)
        return found

    def storage_totals(self) -> dict[str, int]:
        """Physical totals: xorbs, their logical and packed bytes, whole-blob contents."""
        xorbs = self._c.execute(
            select(
                func.count(),
                func.coalesce(func.sum(t.xorbs.c.raw_bytes), 0),
                func.coalesce(func.sum(t.xorbs.c.pack_bytes), 0),
                func.coalesce(func.sum(t.xorbs.c.chunk_count), 0),
            )
        ).one()
        whole = self._c.execute(
            select(func.count(), func.coalesce(func.sum(t.blobs.c.size), 0)).where(
                t.blobs.c.xet_hash.is_(None)
            )
        ).one()
        return {
            "xorbs": int(xorbs[0]),
            "xorb_bytes": int(xorbs[1]),
            "pack_bytes": int(xorbs[2]),
            "chunks": int(xorbs[3]),
            "whole_blobs": int(whole[0]),
            "whole_blob_bytes": int(whole[1]),
        }


def _file(row: object) -> XetFile:
    terms_blob: bytes = row.terms  # type: ignore[attr-defined]
    terms = tuple(
        XetTerm(xet_hex(h), start, end)
        for h, start, end in (
            _TERM.unpack_from(terms_blob, i) for i in range(0, len(terms_blob), _TERM.size)
        )
    )
    return XetFile(row.xet_hash, row.sha256, row.size, terms)  # type: ignore[attr-defined]
