"""Browser sign-in: a signed cookie that names the access token a person signed in with.

The cookie holds the token's id, an expiry and an HMAC over both with the hub's key, never the
token's secret. Every request looks the token up again, so deleting the token signs the browser
out everywhere; a cookie past its expiry or with a wrong signature is simply anonymous.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from kaiyuan.core.errors import AuthenticationError
from kaiyuan.core.models import ANONYMOUS, Principal
from kaiyuan.services.accounts import AccountService
from kaiyuan.services.clock import Clock, utc_now

_COOKIE = re.compile(r"^([0-9a-f]{16})\.([0-9]{1,12})\.([0-9a-f]{64})$")


class WebSessions:
    def __init__(
        self,
        accounts: AccountService,
        secret: bytes,
        max_age_seconds: int,
        clock: Clock = utc_now,
    ) -> None:
        self._accounts = accounts
        self._secret = secret
        self.max_age_seconds = max_age_seconds
        self._clock = clock

    def sign_in(self, token: str) -> tuple[Principal, str]:
        """The person behind `token` and the cookie value that keeps them signed in.

        AuthenticationError for a token that is not valid.
        """
        principal = self._accounts.authenticate(token)
        if principal.is_anonymous:
            raise AuthenticationError("paste an access token to sign in")
        expires = int(self._clock().timestamp()) + self.max_age_seconds
        value = f"{principal.token_id}.{expires}"
        return principal, f"{value}.{self._sign(value)}"

    def principal(self, cookie: str | None) -> Principal:
        """Who a session cookie belongs to; anonymous for anything but a valid, live session."""
        if not cookie:
            return ANONYMOUS
        match = _COOKIE.match(cookie)
        if match is None:
            return ANONYMOUS
        token_id, expires, signature = match.groups()
        if not hmac.compare_digest(signature, self._sign(f"{token_id}.{expires}")):
            return ANONYMOUS
        if int(expires) <= self._clock().timestamp():
            return ANONYMOUS
        return self._accounts.principal_of_token(token_id) or ANONYMOUS

    def _sign(self, value: str) -> str:
        return hmac.new(self._secret, f"web-session:{value}".encode(), hashlib.sha256).hexdigest()
