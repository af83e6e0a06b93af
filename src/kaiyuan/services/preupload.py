"""Deciding how each file of an upload travels: inline in the commit (regular) or through LFS."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from kaiyuan.core.errors import HubError, InvalidInputError
from kaiyuan.core.ids import RepoId, RepoKind, validate_path
from kaiyuan.core.models import FileEntry, Principal, ResolvedRevision
from kaiyuan.services import access
from kaiyuan.services.reads import ReadService

GITATTRIBUTES = ".gitattributes"
MAX_FILES_PER_CALL = 1000
MAX_ATTRIBUTES_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Candidate:
    path: str
    size: int
    sample: bytes  # the first bytes of the file (up to 512)


@dataclass(frozen=True, slots=True)
class Decision:
    path: str
    lfs: bool
    remote_oid: str | None  # what the file is now at the revision (sha256 for LFS, git sha1 else)


def plan(
    reads: ReadService,
    principal: Principal,
    kind: RepoKind,
    repo_id: RepoId,
    revision: str,
    candidates: list[Candidate],
    lfs_threshold: int,
) -> list[Decision]:
    """How the caller should send each file; asking needs write access, like the commit."""
    at = reads.resolve(principal, kind, repo_id, revision)
    access.require_write(principal, repo_id.namespace)
    return decide(reads, at, candidates, lfs_threshold)


def decide(
    reads: ReadService, at: ResolvedRevision, candidates: list[Candidate], lfs_threshold: int
) -> list[Decision]:
    """LFS for large or binary files and for paths `.gitattributes` sends to LFS."""
    if len(candidates) > MAX_FILES_PER_CALL:
        raise InvalidInputError(f"at most {MAX_FILES_PER_CALL} files per preupload call")
    for candidate in candidates:
        validate_path(candidate.path)
        if candidate.size < 0:
            raise InvalidInputError(f"negative size for {candidate.path!r}")
    existing = {
        e.path: e
        for e in reads.paths_info(at, [c.path for c in candidates] + [GITATTRIBUTES])
        if isinstance(e, FileEntry)
    }
    patterns = _lfs_patterns(reads, existing.get(GITATTRIBUTES))
    decisions = []
    for c in candidates:
        lfs = c.size >= lfs_threshold or b"\x00" in c.sample or _matches(c.path, patterns)
        current = existing.get(c.path)
        remote = None
        if current is not None:
            remote = current.sha256 if current.lfs else current.oid
        decisions.append(Decision(c.path, lfs, remote))
    return decisions


def _lfs_patterns(reads: ReadService, attributes: FileEntry | None) -> list[str]:
    if attributes is None:
        return []
    try:
        text = reads.read_small(attributes, MAX_ATTRIBUTES_BYTES).decode("utf-8", "replace")
    except HubError:
        return []
    patterns = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:  # noqa: PLR2004
            patterns.append(parts[0])
    return patterns


def _matches(path: str, patterns: list[str]) -> bool:
    name = path.rsplit("/", 1)[-1]
    for pattern in patterns:
        target = path if "/" in pattern else name
        if fnmatch.fnmatchcase(target, pattern.lstrip("/")):
            return True
    return False
