"""Limits on use per source address and per user: set-ups per minute, failed logins.

Counted by the `limits` library (sliding-window counters) in this process's memory,
or, given a Redis URL (`--redis-url`), in Redis so every worker and instance shares
them. When Redis cannot answer (down, slow past `REDIS_TIMEOUT_S`), each process
counts for itself until it answers again: limits stay enforced, per process, and the
failure is counted (`limits_store_errors` in `/stats`) and logged (once per
`STORE_ERROR_LOG_EVERY_S`); a limit store must never take call set-up down with it.
A request over a limit is `RateLimited` (429) with the seconds until the window has
room as its Retry-After; each refusal is counted in `/stats` (`limits`).
Imports `limits`, redis-py's errors, and the gateway's errors, counters and principal.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from redis.exceptions import RedisError

from gateway.auth.principal import Principal
from gateway.errors import RateLimited
from gateway.metrics.counters import COUNTERS

logger = logging.getLogger(__name__)

#: How long one limit check may wait for Redis before this process counts alone.
REDIS_TIMEOUT_S = 0.5
STORE_ERROR_LOG_EVERY_S = 30.0
_T = TypeVar("_T")


def limits_storage_url(redis_url: str) -> str:
    """`redis://...` (or `rediss://`, `unix://`) as the `limits` async storage URL."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


class UsageLimits:
    """The gateway's per-address and per-user limits (one instance per process)."""

    def __init__(
        self,
        *,
        setups_per_address: int,
        setups_per_user: int,
        auth_failures_per_address: int,
        redis_url: str | None = None,
    ) -> None:
        self._local = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._shared: SlidingWindowCounterRateLimiter | None = None
        if redis_url is not None:
            storage = storage_from_string(
                limits_storage_url(redis_url),
                implementation="redispy",
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
            if not isinstance(storage, Storage):
                raise ValueError(f"not an async Redis URL: {redis_url!r}")
            self._shared = SlidingWindowCounterRateLimiter(storage)
        self._last_store_error_log = -math.inf
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
        stats = await self._use(lambda lim: lim.get_window_stats(self._failures, source))
        if stats.remaining <= 0:
            COUNTERS.add("rate_limited_auth")
            raise RateLimited(
                "too many failed authentications; try again later",
                retry_after_s=_seconds_until(stats.reset_time),
            )

    async def auth_failed(self, source: str) -> None:
        COUNTERS.add("auth_failures")
        await self._use(lambda lim: lim.hit(self._failures, source))

    async def _hit(self, item: RateLimitItem, who: str, counter: str) -> None:
        if await self._use(lambda lim: lim.hit(item, who)):
            return
        COUNTERS.add(counter)
        stats = await self._use(lambda lim: lim.get_window_stats(item, who))
        raise RateLimited(
            "too many call set-ups; try again later",
            retry_after_s=_seconds_until(stats.reset_time),
        )

    async def _use(self, check: Callable[[SlidingWindowCounterRateLimiter], Awaitable[_T]]) -> _T:
        """`check` against Redis when configured and answering, else this process's."""
        if self._shared is not None:
            try:
                return await check(self._shared)
            except (RedisError, OSError, TimeoutError) as exc:
                COUNTERS.add("limits_store_errors")
                now = time.monotonic()
                if now - self._last_store_error_log >= STORE_ERROR_LOG_EVERY_S:
                    self._last_store_error_log = now
                    logger.warning("rate limits: Redis unavailable (%s); counting in this "
                                   "process until it answers", type(exc).__name__)  # fmt: skip
        return await check(self._local)


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
