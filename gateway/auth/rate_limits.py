"""Limits on use per source address and per user: set-ups per minute, failed logins.

Counted by the `limits` library (sliding-window counters) in this process's memory,
or, given a Redis URL (issue 14), in Redis so every worker and instance shares them.
A request over a limit is `RateLimited` (429) with the seconds until the window has
room as its Retry-After; each refusal is counted in `/stats` (`limits`).
Imports `limits` and the gateway's errors, counters and principal.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from gateway.auth.principal import Principal
from gateway.errors import RateLimited
from gateway.metrics.counters import COUNTERS


class UsageLimits:
    """The gateway's per-address and per-user limits (one instance per process)."""

    def __init__(
        self,
        *,
        setups_per_address: int,
        setups_per_user: int,
        auth_failures_per_address: int,
        storage_url: str = "async+memory://",
    ) -> None:
        storage = storage_from_string(storage_url)
        if not isinstance(storage, Storage):
            raise ValueError("rate limits need an async storage URL (async+memory://, ...)")
        self._storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._per_address = RateLimitItemPerMinute(setups_per_address, namespace="setup-addr")
        self._per_user = RateLimitItemPerMinute(setups_per_user, namespace="setup-user")
        self._failures = RateLimitItemPerMinute(auth_failures_per_address, namespace="auth-fail")

    async def admit_setup(self, source: str, principal: Principal) -> None:
        """A call or WebSocket set-up from `source` by `principal`; `RateLimited` when
        either is over its limit (anonymous principals are limited by address only)."""
        await self._hit(self._per_address, source, "rate_limited_setups")
        if principal.authenticated and not principal.admin:
            await self._hit(self._per_user, principal.user_id, "rate_limited_setups")

    async def check_auth_allowed(self, source: str) -> None:
        """`RateLimited` while `source` has failed to authenticate too often."""
        stats = await self._limiter.get_window_stats(self._failures, source)
        if stats.remaining <= 0:
            COUNTERS.add("rate_limited_auth")
            raise RateLimited(
                "too many failed authentications; try again later",
                retry_after_s=_seconds_until(stats.reset_time),
            )

    async def auth_failed(self, source: str) -> None:
        COUNTERS.add("auth_failures")
        await self._limiter.hit(self._failures, source)

    async def _hit(self, item: RateLimitItem, who: str, counter: str) -> None:
        if await self._limiter.hit(item, who):
            return
        COUNTERS.add(counter)
        stats = await self._limiter.get_window_stats(item, who)
        raise RateLimited(
            "too many call set-ups; try again later",
            retry_after_s=_seconds_until(stats.reset_time),
        )


def _seconds_until(reset_time: float) -> int:
    return max(1, math.ceil(reset_time - time.time()))


class TokenBucket:
    """`rate_per_s` events a second with bursts of `burst`, on an explicit clock: the
    typed turns one call may send to its agent."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._at: float | None = None

    def take(self, now: float) -> bool:
        """Whether one more event is allowed at `now` (and count it if so)."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
