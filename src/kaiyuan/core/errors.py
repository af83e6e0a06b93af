"""Domain errors. They say what went wrong in the domain; each edge decides the status code."""

from __future__ import annotations


class HubError(Exception):
    """Base of every error Kaiyuan raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- not found ------------------------------------------------------------------------------
class NotFoundError(HubError):
    """Something named in the request does not exist (or is not visible to the caller)."""


class RepoNotFoundError(NotFoundError):
    pass


class RevisionNotFoundError(NotFoundError):
    pass


class EntryNotFoundError(NotFoundError):
    """A file or folder is absent at a revision that exists; carries the resolved commit."""

    def __init__(self, message: str, commit_id: str | None = None) -> None:
        super().__init__(message)
        self.commit_id = commit_id


class BlobNotFoundError(NotFoundError):
    pass


class UserNotFoundError(NotFoundError):
    pass


# --- access ---------------------------------------------------------------------------------
class AuthenticationError(HubError):
    """The credential presented is missing, malformed, unknown or expired."""


class AccessDeniedError(HubError):
    """The caller is known but may not do this."""


# --- conflicts ------------------------------------------------------------------------------
class ConflictError(HubError):
    """The request collides with the current state (name taken, ref moved)."""


class AlreadyExistsError(ConflictError):
    pass


class StaleParentError(ConflictError):
    """A commit named a parent that is no longer the head of its branch."""


class RateLimitedError(HubError):
    """The caller sent more requests than its limit allows; it may retry after `retry_after` s."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# --- invalid input --------------------------------------------------------------------------
class InvalidInputError(HubError):
    """Input that is malformed or breaks a rule: ids, paths, operations, documents."""


class TooLargeError(InvalidInputError):
    """Input larger than a configured limit."""


class IntegrityError(InvalidInputError):
    """Bytes that do not match the digest or size they were announced with."""


class GatedRepoError(AccessDeniedError):
    """The repository is gated and the caller has not been granted its files (yet)."""

    def __init__(self, message: str, *, signed_in: bool) -> None:
        super().__init__(message)
        self.signed_in = signed_in


class ProtectedRefError(AccessDeniedError):
    """The default branch cannot be deleted."""


class UnsupportedError(HubError):
    """A protocol feature this hub does not implement (yet); the message says which."""


class StorageUnavailableError(HubError):
    """A backing store (database, blob store) cannot be reached right now; retrying may work."""


class PolicyViolationError(InvalidInputError):
    """A push breaks licence obligations that the hub's or organisation's policy rejects."""
