"""Garbage collection: content no repository holds, xorbs no content reads, blobs nothing names.

Safe while uploads are in flight: a client sends xorbs before the shard that names them, and an
LFS upload is stored before it is recorded, so nothing younger than the grace period is touched.
Records are deleted in one transaction that holds off writers of content records; writers check
that what they reuse still exists, so they never point at something collected under them. Blob
files go only after that transaction commits.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import timedelta

from kaiyuan.core.errors import BlobNotFoundError
from kaiyuan.core.ports import BlobStore, MetadataSession, MetadataStore
from kaiyuan.services.clock import Clock, utc_now

ABANDONED_AFTER = timedelta(hours=1)


@dataclass(slots=True)
class CollectionReport:
    contents: int = 0
    xorbs: int = 0
    blobs: int = 0
    bytes_freed: int = 0
    abandoned_bytes: int = 0  # staged files and parts of uploads that never finished
    dry_run: bool = False
    blob_digests: list[str] = field(default_factory=list)


class GarbageCollector:
    def __init__(self, store: MetadataStore, blobs: BlobStore, clock: Clock = utc_now) -> None:
        self._store = store
        self._blobs = blobs
        self._clock = clock

    def collect(self, grace: timedelta, *, dry_run: bool = False) -> CollectionReport:
        cutoff = self._clock() - grace
        report = CollectionReport(dry_run=dry_run)
        with self._store.session(write=True) as session:
            session.lock_for_collection()
            held = session.repo_object_digests(None)
            ages = session.content_ages()
            dead_contents = {
                sha for sha, (at, _) in ages.items() if sha not in held and at < cutoff
            }
            briefs = session.xorb_briefs()
            if not dry_run:
                session.delete_contents(dead_contents)
                in_use = session.xorbs_in_use()
            else:
                in_use = _xorbs_in_use_without(session, dead_contents)
            live = {b.xorb_hash for b in briefs if b.xorb_hash in in_use or b.created_at >= cutoff}
            needed_blobs = set().union(*(b.blobs for b in briefs if b.xorb_hash in live))
            # A xorb whose pack another live xorb reads stays: its record indexes those chunks.
            live |= {b.xorb_hash for b in briefs if b.pack_sha256 in needed_blobs}
            needed_blobs |= set().union(*(b.blobs for b in briefs if b.xorb_hash in live))
            dead_xorbs = [b for b in briefs if b.xorb_hash not in live]
            if not dry_run:
                session.delete_xorbs(b.xorb_hash for b in dead_xorbs)
            whole_live = {sha for sha, (_, xet) in ages.items() if not xet} - dead_contents
            known = whole_live | needed_blobs
        report.contents = len(dead_contents)
        report.xorbs = len(dead_xorbs)
        self._sweep_blobs(known, cutoff.timestamp(), report)
        if not dry_run:
            # A live upload's staged file may sit idle while the hub works on it: never sweep
            # anything touched within the last hour, whatever the grace period.
            idle_since = self._clock() - max(grace, ABANDONED_AFTER)
            report.abandoned_bytes = self._blobs.sweep_abandoned(idle_since.timestamp())
        return report

    def _sweep_blobs(self, known: set[str], cutoff: float, report: CollectionReport) -> None:
        """Delete blob files no record names and that are older than the cutoff."""
        for digest in list(self._blobs.iter_digests()):
            if digest in known:
                continue
            with contextlib.suppress(BlobNotFoundError):
                if self._blobs.modified_at(digest) >= cutoff:
                    continue  # just written: an upload may be about to record it
                size = self._blobs.stat(digest).size
                if not report.dry_run:
                    self._blobs.delete(digest)
                report.blobs += 1
                report.bytes_freed += size
                report.blob_digests.append(digest)


def _xorbs_in_use_without(session: MetadataSession, dead: set[str]) -> set[str]:
    """For a dry run: the xorbs in use once the dead contents are gone, without deleting them."""
    remaining = {sha for sha in session.content_ages() if sha not in dead}
    used: set[str] = set()
    for _, xet in session.contents(remaining).values():
        if xet is not None:
            used.update(term.xorb_hash for term in xet.terms)
    return used
