"""Consistency check of metadata against blobs (`kaiyuan admin fsck`).

Finds what points at nothing: content whose blob or xorbs are gone, xorbs whose packs are gone or
too short, tree entries without content, refs without commits, index rows left behind. With
`repair`, index rows that point at nothing are removed (they only cost lookups); lost data cannot
be repaired and is reported. With `verify_data`, every content is read back and re-hashed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

from kaiyuan.core.errors import BlobNotFoundError, HubError
from kaiyuan.core.models import Codec, StoredXorb, XetFile
from kaiyuan.core.ports import BlobStore, MetadataStore
from kaiyuan.services.contents import ContentStore

_EXAMPLES = 20


@dataclass(slots=True)
class FsckReport:
    """Problems by kind, with up to 20 examples each; `repaired` counts rows removed."""

    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    repaired: dict[str, int] = field(default_factory=dict)
    checked: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] += 1
        if len(self.problems[kind]) < _EXAMPLES:
            self.problems[kind].append(example)

    @property
    def clean(self) -> bool:
        return not self.counts


class ConsistencyChecker:
    def __init__(self, store: MetadataStore, blobs: BlobStore, contents: ContentStore) -> None:
        self._store = store
        self._blobs = blobs
        self._contents = contents

    def check(self, *, repair: bool = False, verify_data: bool = False) -> FsckReport:
        report = FsckReport()
        sizes: dict[str, int | None] = {}  # blob sha256 -> size, None when missing
        with self._store.session(write=repair) as session:
            xorbs = session.get_xorbs(b.xorb_hash for b in session.xorb_briefs())
            contents = session.contents(session.content_ages())
            for xorb in xorbs.values():
                self._check_xorb(xorb, sizes, report)
            for sha256, (size, xet) in contents.items():
                self._check_content(sha256, size, xet, xorbs, sizes, report)
            for tree, name, sha256 in session.tree_files_without_content(_EXAMPLES):
                report.add("tree-missing-content", f"tree {tree} file {name!r}: {sha256}")
            for repo_pk, name, target in session.refs_without_commit(_EXAMPLES):
                report.add("ref-dangling", f"repository #{repo_pk} ref {name!r} -> {target}")
            dangling = session.dangling_chunk_index(repair=repair)
            dangling += session.dangling_file_xorbs(repair=repair)
            if dangling and repair:
                report.repaired["index-dangling"] = dangling
            elif dangling:
                report.add("index-dangling", f"{dangling} rows point at nothing (--repair)")
        report.checked = {"contents": len(contents), "xorbs": len(xorbs), "blobs": len(sizes)}
        if verify_data:
            self._verify(list(contents), report)
        return report

    def _check_content(
        self,
        sha256: str,
        size: int,
        xet: XetFile | None,
        xorbs: dict[str, StoredXorb],
        sizes: dict[str, int | None],
        report: FsckReport,
    ) -> None:
        if xet is None:
            if self._size(sha256, sizes) != size:
                report.add("content-missing", f"{sha256}: blob missing or not {size} bytes")
            return
        total = 0
        for term in xet.terms:
            xorb = xorbs.get(term.xorb_hash)
            if xorb is None or term.end > len(xorb.chunk_ends):
                report.add("content-broken", f"{sha256}: xorb {term.xorb_hash} missing or short")
                return
            total += xorb.chunk_ends[term.end - 1] - xorb.chunk_start(term.start)
        if total != size:
            report.add("content-broken", f"{sha256}: its chunks add up to {total}, not {size}")

    def _size(self, sha256: str, sizes: dict[str, int | None]) -> int | None:
        if sha256 not in sizes:
            try:
                sizes[sha256] = self._blobs.stat(sha256).size
            except BlobNotFoundError:
                sizes[sha256] = None
        return sizes[sha256]

    def _check_xorb(
        self, xorb: StoredXorb, sizes: dict[str, int | None], report: FsckReport
    ) -> None:
        for number, span in enumerate(xorb.spans):
            stop = (
                xorb.spans[number + 1].first
                if number + 1 < len(xorb.spans)
                else len(xorb.chunk_ends)
            )
            stored = xorb.stored_start(stop) - xorb.stored_start(span.first)
            size = self._size(span.blob_sha256, sizes)
            if size is None or span.offset + stored > size:
                kind = "missing" if size is None else "too short"
                report.add(
                    "xorb-missing-data",
                    f"xorb {xorb.xorb_hash}: pack {span.blob_sha256} {kind} "
                    f"({Codec(span.codec).name.lower()} run of chunks {span.first}..{stop})",
                )

    def _verify(self, digests: list[str], report: FsckReport) -> None:
        for sha256 in digests:
            digest = hashlib.sha256()
            with contextlib.suppress(HubError):
                for piece in self._contents.open(sha256):
                    digest.update(piece)
                if digest.hexdigest() == sha256:
                    continue
            report.add("content-corrupt", f"{sha256}: its bytes do not hash to it")
