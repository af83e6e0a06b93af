"""Rate limits per caller, counted in the shared database so that they hold across processes."""

from __future__ import annotations

from kaiyuan.core.errors import RateLimitedError
from kaiyuan.core.ports import MetadataStore
from kaiyuan.services.clock import Clock, utc_now

WINDOW_SECONDS = 60


class RateLimiter:
    """At most `per_minute` requests per subject in each calendar minute (0: no limit).

    A fixed window is coarse (a burst may straddle two minutes) but costs one row per subject
    and minute, shared by every server process; that is what a hub-wide limit needs.
    """

    def __init__(self, store: MetadataStore, clock: Clock = utc_now) -> None:
        self._store = store
        self._clock = clock

    def take(self, subject: str, per_minute: int) -> None:
        """Count a request by `subject`; RateLimitedError once it is over `per_minute`."""
        if per_minute <= 0:
            return
        now = self._clock().timestamp()
        window = int(now // WINDOW_SECONDS)
        with self._store.session(write=True) as session:
            count = session.count_request(subject, window)
        if count > per_minute:
            retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
            raise RateLimitedError(
                f"rate limit of {per_minute} requests per minute exceeded; "
                f"retry after {retry_after} s",
                retry_after,
            )
