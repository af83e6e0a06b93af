"""Scanning what is committed: every new content gets a verdict before the commit lands.

The hub's policy decides what a verdict does: by default an `unsafe` file (code that runs on
load) refuses the commit and everything else is recorded and shown; a stricter hub refuses
anything that is not `safe`. Verdicts are kept per content, so a file committed again (another
branch, another repository) is not scanned again.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterable

from kaiyuan.core.errors import PolicyViolationError
from kaiyuan.core.ports import MetadataStore
from kaiyuan.core.scanning import FileScan, ScanStatus
from kaiyuan.services.clock import Clock, utc_now
from kaiyuan.services.contents import ContentStore
from kaiyuan.services.distribution.scan import SCANNER, ScanLimits, scan
from kaiyuan.services.distribution.sealing import SealedReader, plaintext_file

_READ_BUFFER = 1024 * 1024
SEALED_FINDING = "sealed: scanned in memory, by its plaintext"


class ScanService:
    def __init__(
        self,
        store: MetadataStore,
        contents: ContentStore,
        *,
        refuse: frozenset[ScanStatus] = frozenset({ScanStatus.UNSAFE}),
        limits: ScanLimits | None = None,
        clock: Clock = utc_now,
        unseal: Callable[[str], SealedReader | None] = lambda _sha: None,
    ) -> None:
        self._unseal = unseal
        self._store = store
        self._contents = contents
        self._refuse = refuse
        self._limits = limits or ScanLimits()
        self._clock = clock

    def check(self, files: Iterable[tuple[str, str]]) -> dict[str, FileScan]:
        """Scan the (path, sha256) contents without a current verdict; refuse per policy.

        Runs before the commit's transaction (a scan reads the whole file for some formats);
        PolicyViolation names every refused file and why.
        """
        wanted = dict(files)
        verdicts = self.verdicts(wanted.values())
        for sha256 in {s for s in wanted.values() if s not in verdicts}:
            found = self.scan_content(sha256)
            with self._store.session(write=True) as session:
                session.save_scan(found)
            verdicts[sha256] = found
        refused = [
            f"{path} is {verdicts[sha].status.value}: {'; '.join(verdicts[sha].findings[:3])}"
            for path, sha in sorted(wanted.items())
            if verdicts[sha].status in self._refuse
        ]
        if refused:
            raise PolicyViolationError(
                "the hub refuses files its scanner judged "
                f"{'/'.join(sorted(s.value for s in self._refuse))}: " + " | ".join(refused)
            )
        return verdicts

    def backfill(self) -> Counter[ScanStatus]:
        """Scan every content a repository holds that has no verdict by this scanner.

        For contents committed before the scanner existed or before its rules changed; what
        the verdicts were, counted. A verdict found this way refuses nothing: the commit
        already landed.
        """
        with self._store.session() as session:
            held = session.repo_object_digests(None)
        done = self.verdicts(held)
        counts: Counter[ScanStatus] = Counter(v.status for v in done.values())
        for sha256 in sorted(held - set(done)):
            found = self.scan_content(sha256)
            with self._store.session(write=True) as session:
                session.save_scan(found)
            counts[found.status] += 1
        return counts

    def verdicts(self, sha256s: Iterable[str]) -> dict[str, FileScan]:
        """Current verdicts (by this scanner version) on these contents."""
        with self._store.session() as session:
            stored = session.scans(sha256s)
        return {sha: found for sha, found in stored.items() if found.scanner == SCANNER}

    def scan_content(self, sha256: str) -> FileScan:
        """Scan one stored content now (not stored); a sealed one by its plaintext, in memory."""
        sealed = self._unseal(sha256)
        if sealed is not None:
            with io.BufferedReader(plaintext_file(sealed), _READ_BUFFER) as handle:
                found = scan(handle, sealed.size, sha256, self._limits)
            findings = (SEALED_FINDING, *found.findings)
            return FileScan(
                sha256,
                found.status,
                found.format,
                findings,
                found.imports,
                found.scanner,
                self._clock(),
            )
        size = self._contents.stat(sha256).size
        with self._contents.reader(sha256, size) as handle:
            found = scan(handle, size, sha256, self._limits)
        return FileScan(
            found.sha256,
            found.status,
            found.format,
            found.findings,
            found.imports,
            found.scanner,
            self._clock(),
        )
