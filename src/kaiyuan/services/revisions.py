"""Turning a revision name (branch, tag, full or short commit id) into a commit."""

from __future__ import annotations

from kaiyuan.core.errors import RevisionNotFoundError
from kaiyuan.core.ids import MAX_REF_LENGTH, is_full_sha, is_short_sha
from kaiyuan.core.models import Commit, RefKind, Repo
from kaiyuan.core.ports import MetadataSession


def check_name(revision: str) -> str:
    """Refuse names no ref can have (control characters, NUL, over-long) before any lookup."""
    if (
        not isinstance(revision, str)
        or not revision
        or len(revision) > MAX_REF_LENGTH
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in revision)  # noqa: PLR2004
    ):
        raise RevisionNotFoundError(f"invalid revision {revision!r}")
    return revision


def resolve(session: MetadataSession, repo: Repo, revision: str) -> Commit:
    """Branches win over tags, tags over commit ids, as git resolves them."""
    check_name(revision)
    for kind in (RefKind.BRANCH, RefKind.TAG):
        ref = session.get_ref(repo, kind, revision)
        if ref is not None:
            commit = session.get_commit(repo, ref.target)
            if commit is not None:
                return commit
    if is_full_sha(revision):
        commit = session.get_commit(repo, revision)
        if commit is not None:
            return commit
    elif is_short_sha(revision):
        matches = session.find_commits(repo, revision, limit=2)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise RevisionNotFoundError(f"revision {revision!r} is ambiguous in {repo.repo_id}")
    raise RevisionNotFoundError(f"revision {revision!r} not found in {repo.repo_id}")
