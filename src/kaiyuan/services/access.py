"""Who may see and change what. Decisions only; callers raise the domain error they return."""

from __future__ import annotations

from kaiyuan.core.errors import (
    AccessDeniedError,
    AuthenticationError,
    GatedRepoError,
    RepoNotFoundError,
)
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import AccessStatus, Principal, Repo, Scope
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


def require_files(session: MetadataSession, principal: Principal, repo: Repo) -> None:
    """A gated repository's files: for its namespace's members and for accepted requests."""
    if repo.gated is None or repo.repo_id.namespace in namespaces_of(principal):
        return
    what = f"{repo.kind.value} {repo.repo_id}"
    if principal.user is None:
        raise GatedRepoError(
            f"Access to {what} is restricted. You must have access to it and be authenticated "
            "to access it. Please log in.",
            signed_in=False,
        )
    request = session.get_access_request(repo, principal.user)
    if request is None or request.status is not AccessStatus.ACCEPTED:
        state = "is still pending" if request and request.status is AccessStatus.PENDING else ""
        raise GatedRepoError(
            f"Access to {what} is restricted and you are not in the authorized list"
            + (f" (your request {state})" if state else "; ask for access first")
            + ".",
            signed_in=True,
        )


def visible_repo(
    session: MetadataSession, principal: Principal, kind: RepoKind, repo_id: RepoId
) -> Repo:
    """The repository, or RepoNotFound when it is missing or private to someone else."""
    repo = session.get_repo(kind, repo_id)
    if repo is None:
        raise RepoNotFoundError(f"repository {repo_id} not found")
    require_read(principal, repo)
    return repo
