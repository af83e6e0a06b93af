"""Users, organisations and access tokens; turning a presented token into a Principal."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from kaiyuan.core.errors import AuthenticationError, InvalidInputError, UserNotFoundError
from kaiyuan.core.ids import validate_namespace
from kaiyuan.core.models import ANONYMOUS, AccessToken, Account, Principal, Scope
from kaiyuan.core.ports import MetadataStore
from kaiyuan.services.clock import Clock, utc_now

TOKEN_PREFIX = "ky_"  # noqa: S105 - a prefix, not a secret
_TOKEN_ID_LENGTH = 16


class AccountService:
    def __init__(self, store: MetadataStore, clock: Clock = utc_now) -> None:
        self._store = store
        self._clock = clock

    def create_user(self, name: str) -> Account:
        """Register a user; the name becomes their namespace."""
        account = Account(validate_namespace(name), is_org=False, created_at=self._clock())
        with self._store.session(write=True) as session:
            session.add_account(account)
        return account

    def create_org(self, name: str, members: list[str]) -> Account:
        """Register an organisation with existing users as members."""
        account = Account(validate_namespace(name), is_org=True, created_at=self._clock())
        with self._store.session(write=True) as session:
            for member in members:
                found = session.get_account(member)
                if found is None or found.is_org:
                    raise UserNotFoundError(f"user {member!r} does not exist")
            session.add_account(account)
            for member in members:
                session.add_member(account.name, member)
        return account

    def add_member(self, org: str, user: str) -> None:
        with self._store.session(write=True) as session:
            found_org = session.get_account(org)
            if found_org is None or not found_org.is_org:
                raise UserNotFoundError(f"organisation {org!r} does not exist")
            found_user = session.get_account(user)
            if found_user is None or found_user.is_org:
                raise UserNotFoundError(f"user {user!r} does not exist")
            session.add_member(org, user)

    def create_token(self, user: str, scope: Scope, display_name: str = "") -> str:
        """Issue a token for a user and return its secret; only its sha256 is kept."""
        token_id = secrets.token_hex(_TOKEN_ID_LENGTH // 2)
        secret = f"{TOKEN_PREFIX}{token_id}{secrets.token_urlsafe(30)}"
        with self._store.session(write=True) as session:
            account = session.get_account(user)
            if account is None or account.is_org:
                raise UserNotFoundError(f"user {user!r} does not exist")
            session.add_token(
                AccessToken(
                    token_id=token_id,
                    user=user,
                    scope=scope,
                    secret_sha256=_digest(secret),
                    display_name=display_name or f"{scope.value} token",
                    created_at=self._clock(),
                )
            )
        return secret

    def delete_token(self, token: str) -> None:
        """Revoke a token, given as its secret or its 16-character id; it stops working at once.

        Browser sessions signed in with it end too. UserNotFound when there is no such token.
        """
        token_id = token
        if token.startswith(TOKEN_PREFIX):
            token_id = token[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + _TOKEN_ID_LENGTH]
        with self._store.session(write=True) as session:
            if not session.delete_token(token_id):
                raise UserNotFoundError("no such token")

    def authenticate(self, secret: str | None) -> Principal:
        """The caller behind a bearer secret; anonymous when there is none."""
        if not secret:
            return ANONYMOUS
        if (
            not secret.startswith(TOKEN_PREFIX)
            or len(secret) < len(TOKEN_PREFIX) + _TOKEN_ID_LENGTH
        ):
            raise AuthenticationError("Invalid credentials in Authorization header")
        token_id = secret[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + _TOKEN_ID_LENGTH]
        if any(c not in "0123456789abcdef" for c in token_id):
            raise AuthenticationError("Invalid credentials in Authorization header")
        with self._store.session() as session:
            token = session.find_token(token_id)
            if token is None or not hmac.compare_digest(token.secret_sha256, _digest(secret)):
                raise AuthenticationError("Invalid credentials in Authorization header")
            orgs = tuple(session.orgs_of(token.user))
        return Principal(token.user, token.scope, orgs, token.display_name, token.token_id)

    def get(self, name: str) -> Account:
        """The user or organisation `name`; UserNotFound when there is none."""
        with self._store.session() as session:
            account = session.get_account(name)
        if account is None:
            raise UserNotFoundError(f"no user or organisation is named {name!r}")
        return account

    def principal_of_token(self, token_id: str) -> Principal | None:
        """The caller a still-existing token stands for (a web session keeps only the id)."""
        with self._store.session() as session:
            token = session.find_token(token_id)
            if token is None:
                return None
            orgs = tuple(session.orgs_of(token.user))
        return Principal(token.user, token.scope, orgs, token.display_name, token.token_id)

    def whoami(self, principal: Principal) -> Principal:
        if principal.is_anonymous:
            raise AuthenticationError("Invalid user token: no token was sent")
        return principal


def parse_scope(value: str) -> Scope:
    try:
        return Scope(value)
    except ValueError:
        raise InvalidInputError(f"scope must be 'read' or 'write', not {value!r}") from None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
