"""The fleet's registry in Redis: which instances serve, and which one owns each call.

Every gateway process given `--redis-url` keeps, under the prefix
`<app_name>:fleet:`, with a heartbeat every `HEARTBEAT_S` and a TTL of `TTL_S`:
- `instances`: a sorted set of instances' public URLs, scored by when they lapse
  (unix ms), read to find the others;
- `instance:<public URL>`: JSON `{"url", "capacity", "calls"}` (the instance's
  own; every worker of an instance writes the same record);
- `call:<call id>`: the owner's public URL, set when the call is answered,
  refreshed by every heartbeat of the process that holds it, deleted at hang-up
  (and at the first heartbeat after the call ended by itself).
An instance that stops without cleaning up (kill -9) leaves the registry when its
keys lapse: `TTL_S` after its last heartbeat.

Redis is never on the path of a call that stays on one instance: answers, trickle
and hang-ups of local calls work without it. When it does not answer (down, or
slower than `REDIS_TIMEOUT_S`: no retries, the next heartbeat is the retry), the
process logs one WARNING for the outage episode, counts it
(`/stats` `fleet.registry_outages`), and logs again when Redis is back; the
heartbeat after recovery registers the instance and its live calls again (a
restarted Redis has lost them). Imports redis-py, the stdlib and the counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.metrics.counters import COUNTERS

logger = logging.getLogger(__name__)

#: How often an instance says it is alive and refreshes its calls' keys.
HEARTBEAT_S = 2.0
#: How long its keys outlive its last heartbeat: three missed beats.
TTL_S = 6.0
#: The longest one registry operation may take before it counts as an outage (a
#: lookup sits on a request's path: PATCH and DELETE of calls on other instances).
REDIS_TIMEOUT_S = 1.0


class RegistryDown(Exception):
    """Redis did not answer (its error's type in the message; never its URL)."""


class FleetRegistry:
    """One process's view of the fleet, and its part in it."""

    def __init__(
        self,
        redis_url: str,
        *,
        url: str,
        capacity: int,
        prefix: str,
        local_call_ids: Callable[[], list[str]],
        instance_calls: Callable[[], int],
    ) -> None:
        """`url`: this instance's public URL (its identity); `local_call_ids`: the
        calls this process holds; `instance_calls`: the instance's live calls over
        all its workers (its record's `calls`)."""
        self.url = url
        self._capacity = capacity
        self._prefix = prefix
        self._local_call_ids = local_call_ids
        self._instance_calls = instance_calls
        self._redis: Redis = Redis.from_url(
            redis_url,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            # redis-py 7.4's default retries 3 times with backoff up to 10 s (its
            # asyncio `Redis.__init__`): a lookup on a request's path must not wait.
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        # Subscriptions wait for messages: their own connections, no read timeout
        # (a health check every heartbeat notices a Redis that went away).
        self._subscriber = Redis.from_url(
            redis_url,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            health_check_interval=HEARTBEAT_S,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._refreshed: set[str] = set()
        self._other_calls: int | None = None
        self._down = False

    @property
    def available(self) -> bool:
        """Whether Redis answered the last registry operation."""
        return not self._down

    def fleet_calls(self, own_calls: int) -> int | None:
        """Live calls over the fleet: `own_calls` (fresh) plus the other instances'
        at their last heartbeat; None while the registry is unavailable."""
        if self._down or self._other_calls is None:
            return None
        return own_calls + self._other_calls

    async def owner(self, call_id: str) -> str | None:
        """The public URL of the instance that owns `call_id` (None: no instance
        does); `RegistryDown` when Redis does not answer."""
        owner = await self._call(self._redis.get(self._key("call", call_id)))
        return None if owner is None else str(owner)

    async def register_call(self, call_id: str) -> None:
        """Map `call_id` to this instance now (best effort: the next heartbeat of
        the process that holds it maps it too)."""
        with contextlib.suppress(RegistryDown):
            await self._call(self._redis.set(self._key("call", call_id), self.url, px=_ms(TTL_S)))

    async def unregister_call(self, call_id: str) -> None:
        """The call is over: no instance owns `call_id` (best effort: its key lapses)."""
        self._refreshed.discard(call_id)
        with contextlib.suppress(RegistryDown):
            await self._call(self._redis.delete(self._key("call", call_id)))

    async def run(self) -> None:
        """Heartbeat until cancelled."""
        while True:
            try:
                await self.heartbeat()
            except Exception:  # boundary: a bug must not end the membership
                logger.exception("fleet heartbeat failed")
            await asyncio.sleep(HEARTBEAT_S)

    async def heartbeat(self) -> None:
        """Register this instance and its process's live calls for `TTL_S` more,
        forget the calls that ended, and read the other instances' load."""
        live = self._local_call_ids()
        now_ms = int(time.time() * 1000)
        record = {"url": self.url, "capacity": self._capacity, "calls": self._instance_calls()}
        instances = self._key("instances")
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(instances, {self.url: now_ms + _ms(TTL_S)})
        pipe.set(self._key("instance", self.url), json.dumps(record), px=_ms(TTL_S))
        for call_id in live:
            pipe.set(self._key("call", call_id), self.url, px=_ms(TTL_S))
        ended = self._refreshed.difference(live)
        if ended:
            pipe.delete(*(self._key("call", call_id) for call_id in ended))
        pipe.zremrangebyscore(instances, "-inf", now_ms)
        pipe.zrange(instances, 0, -1)
        try:
            *_, members = await self._call(pipe.execute())
            others = [self._key("instance", url) for url in members if url != self.url]
            records = await self._call(self._redis.mget(others)) if others else []
        except RegistryDown:
            self._refreshed.clear()  # a Redis that comes back may have lost them all
            return
        self._refreshed = set(live)
        self._other_calls = sum(_calls_of(raw) for raw in records)

    async def leave(self) -> None:
        """Leave the fleet now (a graceful stop): this instance and this process's
        calls are no longer registered (best effort)."""
        held = self._refreshed.union(self._local_call_ids())
        keys = [self._key("call", call_id) for call_id in held]
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrem(self._key("instances"), self.url)
        pipe.delete(self._key("instance", self.url), *keys)
        with contextlib.suppress(RegistryDown):
            await self._call(pipe.execute())

    async def publish_move(self, user_id: str, session_id: str, keep: str) -> None:
        """Tell every member that call `keep` continues `user_id`'s conversation
        `session_id` (best effort: with Redis down, an older call on another instance
        lasts until its caller hangs up or its idle limit)."""
        message = json.dumps({"user_id": user_id, "session_id": session_id, "keep": keep})
        with contextlib.suppress(RegistryDown):
            await self._call(self._redis.publish(self._key("moves"), message))

    async def listen_moves(self, on_move: Callable[[str, str, str], None]) -> None:
        """Until cancelled: `on_move(user_id, session_id, keep)` for every move any
        member publishes (this one's included), resubscribing after an outage."""
        while True:
            subscriber = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await subscriber.subscribe(self._key("moves"))
                async for message in subscriber.listen():
                    move = _move_of(message.get("data"))
                    if move is not None:
                        on_move(*move)
            except (RedisError, OSError) as exc:
                logger.debug("fleet moves: subscription lost (%s)", type(exc).__name__)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await subscriber.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(HEARTBEAT_S)

    async def close(self) -> None:
        await self._redis.aclose()
        await self._subscriber.aclose()

    async def _call(self, operation: Any) -> Any:
        """`operation` (a redis-py awaitable) bounded by `REDIS_TIMEOUT_S`; an outage
        is logged once per episode and counted, and `RegistryDown` raised."""
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_S):
                result = await operation
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._down:
                self._down = True
                COUNTERS.add("registry_outages")
                logger.warning(
                    "fleet registry (Redis) unavailable (%s): new calls stay on this "
                    "instance; requests for other instances' calls get 503",
                    type(exc).__name__,
                )
            raise RegistryDown(type(exc).__name__) from None
        if self._down:
            self._down = False
            logger.info("fleet registry (Redis) answers again: this instance registers again")
        return result

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _move_of(raw: object) -> tuple[str, str, str] | None:
    """(user_id, session_id, keep) of a published move; None for anything else."""
    if not isinstance(raw, str):
        return None
    try:
        move = json.loads(raw)
        fields = (move["user_id"], move["session_id"], move["keep"])
    except (ValueError, KeyError, TypeError):
        return None
    return fields if all(isinstance(f, str) for f in fields) else None


def _calls_of(raw: str | None) -> int:
    """The `calls` of an instance record (0 for one that lapsed or is unreadable)."""
    if raw is None:
        return 0
    try:
        calls = json.loads(raw)["calls"]
    except (ValueError, KeyError, TypeError):
        return 0
    return calls if isinstance(calls, int) and calls >= 0 else 0
