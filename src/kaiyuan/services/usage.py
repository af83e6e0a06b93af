"""Storage accounting: what a repository, a namespace or the hub holds, and what it costs.

Shared chunks are counted once: that is where Xet deduplication shows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from kaiyuan.core.errors import (
    AccessDeniedError,
    AuthenticationError,
    RepoNotFoundError,
    UserNotFoundError,
)
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import Principal
from kaiyuan.core.ports import MetadataSession, MetadataStore
from kaiyuan.services import access
from kaiyuan.services.contents import ContentStore, clip


@dataclass(frozen=True, slots=True)
class Usage:
    """Sizes of the distinct contents held, and the storage they occupy.

    Contents are every file version uploaded or committed; a byte they share with each other
    (or with anything else on the hub) is counted once in `stored_bytes`.
    """

    files: int
    logical_bytes: int
    stored_bytes: int


@dataclass(frozen=True, slots=True)
class HubUsage:
    held: Usage
    physical_bytes: int  # packs and whole blobs actually in the blob store's records
    totals: dict[str, int]

    @property
    def unreferenced_bytes(self) -> int:
        """Storage no repository needs (garbage collection can reclaim it)."""
        return max(0, self.physical_bytes - self.held.stored_bytes)


class UsageService:
    def __init__(self, store: MetadataStore, contents: ContentStore) -> None:
        self._store = store
        self._contents = contents

    def repo(self, principal: Principal, kind: RepoKind, repo_id: RepoId) -> Usage:
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            return self._measure(session, session.repo_object_digests([repo.pk]))

    def namespace(self, principal: Principal, namespace: str) -> Usage:
        """Every repository of a user or organisation; for that user or the org's members."""
        if principal.user is None:
            raise AuthenticationError("a token is required to see a namespace's storage")
        if namespace not in access.namespaces_of(principal):
            raise AccessDeniedError(f"only members of {namespace!r} may see its storage")
        with self._store.session() as session:
            if session.get_account(namespace) is None:
                raise UserNotFoundError(f"namespace {namespace!r} does not exist")
            pks = session.namespace_repo_pks(namespace)
            return self._measure(session, session.repo_object_digests(pks))

    def of_repo(self, kind: RepoKind, repo_id: RepoId) -> Usage:
        """For administrators: no access check."""
        with self._store.session() as session:
            repo = session.get_repo(kind, repo_id)
            if repo is None:
                raise RepoNotFoundError(f"repository {repo_id} not found")
            return self._measure(session, session.repo_object_digests([repo.pk]))

    def of_namespace(self, namespace: str) -> Usage:
        """For administrators: no access check."""
        with self._store.session() as session:
            if session.get_account(namespace) is None:
                raise UserNotFoundError(f"namespace {namespace!r} does not exist")
            pks = session.namespace_repo_pks(namespace)
            return self._measure(session, session.repo_object_digests(pks))

    def hub(self) -> HubUsage:
        with self._store.session() as session:
            held = self._measure(session, session.repo_object_digests(None))
            totals = session.storage_totals()
        physical = totals["pack_bytes"] + totals["whole_blob_bytes"]
        return HubUsage(held, physical, totals)

    def _measure(self, session: MetadataSession, digests: set[str]) -> Usage:
        records = session.contents(digests)
        ranges: dict[str, list[tuple[int, int]]] = defaultdict(list)
        logical = 0
        for sha256, (size, xet) in records.items():
            logical += size
            if xet is None:
                ranges[sha256].append((0, size))
                continue
            placed = self._contents.place(session, xet.terms)
            for segment in clip(placed, 0, xet.size):
                ranges[segment.blob_sha256].append(
                    (segment.offset, segment.offset + segment.length)
                )
        return Usage(len(records), logical, sum(_union(spans) for spans in ranges.values()))


def _union(spans: list[tuple[int, int]]) -> int:
    total, reach = 0, -1
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total
