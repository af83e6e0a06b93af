"""Gated repositories: who may download the files of a repository that asks users to apply.

A gated repository stays visible (card, file list) to whoever may see it; its files need an
accepted access request. `auto` accepts every request at once (users still identify themselves
and answer the form), `manual` leaves them for the namespace's members to accept or reject.
Members of the namespace always have access.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any

from kaiyuan.core.errors import (
    AccessDeniedError,
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    UserNotFoundError,
)
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.lineage import LicenceAcceptance
from kaiyuan.core.models import AccessRequest, AccessStatus, Gating, Principal, RefKind, Repo
from kaiyuan.core.ports import MetadataSession, MetadataStore
from kaiyuan.services import access
from kaiyuan.services.clock import Clock, utc_now

MAX_FIELDS = 32
MAX_FIELD_CHARS = 2000


class GatingService:
    def __init__(self, store: MetadataStore, clock: Clock = utc_now) -> None:
        self._store = store
        self._clock = clock

    def set_gated(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, gated: Gating | None
    ) -> None:
        """Turn gating on (`auto` or `manual`) or off; for writers of the namespace."""
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            session.set_gated(repo, gated)

    def ask(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, fields: dict[str, str]
    ) -> AccessRequest:
        """Apply for the files; `auto` repositories accept at once. Asking again changes nothing."""
        if principal.user is None:
            raise AuthenticationError("sign in (send a token) to ask for access")
        _check_fields(fields)
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            if repo.gated is None:
                raise InvalidInputError(f"{repo_id} is not gated: its files need no request")
            existing = session.get_access_request(repo, principal.user)
            if existing is not None:
                if existing.status is AccessStatus.REJECTED:
                    raise AccessDeniedError(f"your request for {repo_id} was rejected")
                return existing
            head = session.get_ref(repo, RefKind.BRANCH, repo.default_branch)
            terms = session.licence_report(repo, head.target) if head else None
            form = terms.facts.get("gate_form") if terms else None
            if isinstance(form, dict) and form:
                _check_answers(form, fields)
            now = self._clock()
            auto = repo.gated is Gating.AUTO
            request = AccessRequest(
                request_id=secrets.token_hex(12),
                user=principal.user,
                status=AccessStatus.ACCEPTED if auto else AccessStatus.PENDING,
                fields=fields,
                requested_at=now,
                decided_at=now if auto else None,
            )
            session.save_access_request(repo, request)
            # Asking is accepting the licence shown with the card at that revision: keep it.
            version = terms.facts.get("licence_version") if terms else None
            session.add_licence_acceptance(
                repo,
                LicenceAcceptance(
                    user=principal.user,
                    licence=terms.licence if terms else None,
                    licence_version=str(version) if version else None,
                    commit=head.target if head else "",
                    accepted_at=now,
                    request_id=request.request_id,
                ),
            )
            return request

    def acceptances(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId
    ) -> list[LicenceAcceptance]:
        """Who accepted which licence (and version) of a gated repository, and when.

        For writers of the namespace.
        """
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            return session.licence_acceptances(repo)

    def requests(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, status: AccessStatus
    ) -> list[AccessRequest]:
        """The requests in one state; for writers of the namespace."""
        with self._store.session() as session:
            repo = self._managed(session, principal, kind, repo_id)
            return session.access_requests(repo, status)

    def decide(
        self,
        principal: Principal,
        kind: RepoKind,
        repo_id: RepoId,
        user: str,
        status: AccessStatus,
        reason: str | None = None,
    ) -> AccessRequest:
        """Accept, reject or reset (pending) a user's request."""
        if reason is not None and status is not AccessStatus.REJECTED:
            raise InvalidInputError("a reason goes only with a rejection")
        with self._store.session(write=True) as session:
            repo = self._managed(session, principal, kind, repo_id)
            existing = session.get_access_request(repo, user)
            if existing is None:
                raise NotFoundError(f"no access request from {user!r} for {repo_id}")
            decided = AccessRequest(
                existing.request_id,
                user,
                status,
                existing.fields,
                existing.requested_at,
                None if status is AccessStatus.PENDING else self._clock(),
                None if status is AccessStatus.PENDING else principal.user,
                reason,
            )
            session.save_access_request(repo, decided)
            return decided

    def grant(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, user: str
    ) -> AccessRequest:
        """Give a user access without a request of theirs."""
        with self._store.session(write=True) as session:
            repo = self._managed(session, principal, kind, repo_id)
            account = session.get_account(user)
            if account is None or account.is_org:
                raise UserNotFoundError(f"user {user!r} does not exist")
            existing = session.get_access_request(repo, user)
            now = self._clock()
            granted = AccessRequest(
                existing.request_id if existing else secrets.token_hex(12),
                user,
                AccessStatus.ACCEPTED,
                existing.fields if existing else {},
                existing.requested_at if existing else now,
                now,
                principal.user,
            )
            session.save_access_request(repo, granted)
            return granted

    @staticmethod
    def _managed(
        session: MetadataSession, principal: Principal, kind: RepoKind, repo_id: RepoId
    ) -> Repo:
        repo = access.visible_repo(session, principal, kind, repo_id)
        access.require_write(principal, repo_id.namespace)
        if repo.gated is None:
            raise InvalidInputError(f"{repo_id} is not gated")
        return repo


def _check_fields(fields: dict[str, str]) -> None:
    if len(fields) > MAX_FIELDS:
        raise InvalidInputError(f"at most {MAX_FIELDS} form fields")
    for name, value in fields.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidInputError("form fields are strings")
        if len(name) > MAX_FIELD_CHARS or len(value) > MAX_FIELD_CHARS:
            raise InvalidInputError(f"form fields are at most {MAX_FIELD_CHARS} characters")


_TRUE = frozenset({"true", "on", "yes", "1"})


def _check_answers(form: dict[str, Any], fields: dict[str, str]) -> None:
    """The answers must fill the card's `extra_gated_fields` form, and nothing else."""
    unknown = sorted(set(fields) - set(form))
    if unknown:
        raise InvalidInputError(f"the request form has no field {unknown[0]!r}")
    for label, spec in form.items():
        answer = fields.get(label, "").strip()
        kind = spec.get("type") if isinstance(spec, dict) else None
        if not answer:
            raise InvalidInputError(f"the request form needs an answer for {label!r}")
        if kind == "checkbox" and answer.lower() not in _TRUE:
            raise InvalidInputError(f"{label!r} must be checked (true)")
        if kind == "select" and answer not in (spec.get("options") or []):
            raise InvalidInputError(f"{label!r} must be one of the form's options")
        if kind == "date_picker":
            try:
                date.fromisoformat(answer)
            except ValueError:
                raise InvalidInputError(f"{label!r} must be a date (YYYY-MM-DD)") from None
