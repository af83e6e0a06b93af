"""Who may see and change what. Decisions only; callers raise the domain error they return."""

from __future__ import annotations

from kaiyuan.core.errors import AccessDeniedError, AuthenticationError, RepoNotFoundError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import Principal, Repo, Scope
from kaiyuan.core.ports import MetadataSession


def namespaces_of(principal: Principal) -> tuple[str, ...]:
    """The namespaces whose private repos the caller may see."""
    if principal.user is None:
        return ()
    return (principal.user, *principal.orgs)


def can_read(principal: Principal, repo: Repo) -> bool:
    return not repo.private or repo.repo_id.namespace in namespaces_of(principal)


def require_read(principal: Principal, repo: Repo) -> None:
    """Private repos are indistinguishable from missing ones for anyone without access."""
    if not can_read(principal, repo):
        raise RepoNotFoundError(f"repository {repo.repo_id} not found")


def require_write(principal: Principal, namespace: str) -> None:
    """Writes need a write token of the namespace's user or of a member of its organisation."""
    if principal.user is None:
        raise AuthenticationError("a write token is required: send 'Authorization: Bearer <token>'")
    if principal.scope is not Scope.WRITE:
        raise AccessDeniedError("this token has read scope; a write token is required")
    if namespace not in namespaces_of(principal):
        raise AccessDeniedError(f"user {principal.user!r} may not write to namespace {namespace!r}")


def visible_repo(
    session: MetadataSession, principal: Principal, kind: RepoKind, repo_id: RepoId
) -> Repo:
    """The repository, or RepoNotFound when it is missing or private to someone else."""
    repo = session.get_repo(kind, repo_id)
    if repo is None:
        raise RepoNotFoundError(f"repository {repo_id} not found")
    require_read(principal, repo)
    return repo
