"""Usage limits shared through Redis by every gateway instance, and kept without it.

Two `python -m gateway` instances (separate processes, their own ports) and a Redis
of the test's own (tests/support/redis_server.py). Pins down:
- call set-ups from one address, alternating between the instances, are counted
  once for both: past `--offers-per-minute` in all, `429` from either;
- with Redis stopped, set-ups are still answered (each instance counts alone, limits
  still enforced per process), never a 5xx, and `/stats` counts the store errors;
  when Redis is back the instances share again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from gateway.auth.credentials import mint_token
from tests.support.gateway_process import GatewayProcess, serving
from tests.support.redis_server import RedisServer, redis_server

API_KEY = "shared-limits-admin-key-0123"
SECRET = "shared-limits-secret-0123456789abcdef01"
PER_MINUTE = 6


@contextlib.asynccontextmanager
async def two_instances(redis: RedisServer, tmp: Path) -> AsyncIterator[list[GatewayProcess]]:
    args = (
        "--workers", "1", "--agent", "gateway.agents.scripted:root_agent",
        "--session-url", "memory://", "--api-keys", API_KEY, "--jwt-secret", SECRET,
        "--offers-per-minute", str(PER_MINUTE), "--redis-url", redis.url,
    )  # fmt: skip
    async with (
        serving(*args, log=tmp / "a.log") as first,
        serving(*args, log=tmp / "b.log") as second,
    ):
        yield [first, second]


async def set_ups(instances: list[GatewayProcess], count: int) -> Counter[int]:
    """`count` junk offers from 127.0.0.2 with a token, alternating between instances
    (answered 400 when admitted: the offer is junk; 429 when over the limit)."""
    token = mint_token(SECRET, "mallory", session_id=None, ttl_s=300)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}
    statuses: Counter[int] = Counter()
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        for n in range(count):
            base = instances[n % 2].base
            async with http.post(f"{base}/calls", data="v=0", headers=headers) as response:
                statuses[response.status] += 1
    return statuses


async def limit_counters(instance: GatewayProcess) -> dict[str, int]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{instance.base}/stats", headers=headers) as response,
    ):
        assert response.status == 200
        limits: dict[str, int] = (await response.json())["limits"]
        return limits


async def test_instances_share_limits_and_keep_them_without_redis(tmp_path: Path) -> None:
    async with redis_server(tmp_path) as redis, two_instances(redis, tmp_path) as instances:
        shared = await set_ups(instances, 2 * PER_MINUTE)
        assert shared == Counter({400: PER_MINUTE, 429: PER_MINUTE})

        await redis.stop()
        await asyncio.sleep(0.2)
        alone = await set_ups(instances, 4 * PER_MINUTE)
        # Each instance counts alone: PER_MINUTE each in its own window (a fresh one:
        # the shared counts went with Redis), the rest refused; never a 5xx.
        assert set(alone) <= {400, 429}
        assert alone[400] == 2 * PER_MINUTE
        errors = [(await limit_counters(i))["limits_store_errors"] for i in instances]
        assert all(n > 0 for n in errors), errors

        await redis.start()  # an empty Redis: counting starts over, shared again
        again = await set_ups(instances, 2 * PER_MINUTE)
        assert again == Counter({400: PER_MINUTE, 429: PER_MINUTE})
    assert "Traceback" not in (tmp_path / "a.log").read_text()
    assert "Redis unavailable" in (tmp_path / "a.log").read_text()
