"""Scan verdicts and revision signatures on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.scanning import (
    FileScan,
    ImportSafety,
    PickleImport,
    RevisionSignature,
    ScanStatus,
)
from kaiyuan.storage.sql.store import SqlMetadataStore

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def verdict(sha256: str, status: ScanStatus, scanner: str = "kaiyuan-scan-1") -> FileScan:
    return FileScan(
        sha256,
        status,
        "pickle",
        ("archive/data.pkl: pickle imports posix.system", "中文 finding"),
        (
            PickleImport("posix", "system", ImportSafety.DANGEROUS, "archive/data.pkl"),
            PickleImport("collections", "OrderedDict", ImportSafety.INNOCUOUS),
        ),
        scanner,
        NOW,
    )


def test_verdicts_round_trip_and_are_replaced(store: SqlMetadataStore) -> None:
    first = verdict("a" * 64, ScanStatus.UNSAFE, "old-scanner")
    with store.session(write=True) as s:
        s.save_scan(first)
        s.save_scan(verdict("b" * 64, ScanStatus.SAFE))
    with store.session() as s:
        found = s.scans(["a" * 64, "b" * 64, "c" * 64])
    assert set(found) == {"a" * 64, "b" * 64}
    assert found["a" * 64] == first
    assert found["a" * 64].scanned_at == NOW
    rescanned = verdict("a" * 64, ScanStatus.CAUTION)
    with store.session(write=True) as s:
        s.save_scan(rescanned)
    with store.session() as s:
        assert s.scans(["a" * 64])["a" * 64] == rescanned


def test_many_contents_are_read_in_batches(store: SqlMetadataStore) -> None:
    digests = [f"{i:064x}" for i in range(1200)]
    with store.session(write=True) as s:
        for sha in digests:
            s.save_scan(verdict(sha, ScanStatus.SAFE))
    with store.session() as s:
        assert set(s.scans([*digests, "f" * 64])) == set(digests)
        assert s.scans([]) == {}


def test_a_revision_keeps_its_first_signature(store: SqlMetadataStore) -> None:
    with store.session(write=True) as s:
        repo = s.add_repo(RepoKind.MODEL, RepoId("acme", "signed"), False, NOW)
        first = RevisionSignature("c" * 40, "hub", "k" * 64, '{"a": "签"}'.encode(), NOW)
        assert s.save_signature(repo, first)
        assert not s.save_signature(repo, replace(first, bundle=b"{}"))  # never replaced
    with store.session() as s:
        assert s.signature(repo, "c" * 40, "hub") == first
        assert s.signature(repo, "d" * 40, "hub") is None
        assert s.signature(repo, "c" * 40, "publisher") is None
