"""A conversation moved to another instance: the older call there ends.

Two `python -m gateway` instances share a Redis of the test's own and one SQLite
session store. A caller of instance A re-offers on instance B with its session id
(a browser whose network changed, behind a balancer that picked B): B continues
the conversation and A's call ends with the fatal `moved` error, as within one
instance (tests/test_moved_calls.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from gateway.loadtest.headless_caller import HeadlessCaller
from tests.support.gateway_process import serving
from tests.support.redis_server import redis_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_a_call_moved_to_another_instance_ends_there(tmp_path: Path) -> None:
    async with redis_server(tmp_path) as redis:
        args = (
            "--workers", "1", "--agent", "gateway.agents.scripted:root_agent",
            "--session-url", f"sqlite+aiosqlite:///{tmp_path}/sessions.db",
            "--redis-url", redis.url,
        )  # fmt: skip
        # One after the other (entered in order): the first creates the store's tables.
        async with (
            serving(*args, log=tmp_path / "a.log") as a,
            serving(*args, log=tmp_path / "b.log") as b,
            aiohttp.ClientSession() as http,
        ):
            first, second = HeadlessCaller(), HeadlessCaller()
            try:
                dialled = await first.dial(http, a.base, "?user_id=alice")
                assert dialled.status == 201, dialled.body
                await first.wait_connected()
                query = f"?user_id=alice&session_id={dialled.session_id}"
                redialled = await second.dial(http, b.base, query)
                assert redialled.status == 201, redialled.body
                assert redialled.session_id == dialled.session_id
                await second.wait_connected()
                moved = await first.wait_message(type="error", code="moved", limit_s=10)
                assert moved["fatal"] is True
                async with asyncio.timeout(10):
                    while (await a.get("/healthz"))["calls"] != 0:
                        await asyncio.sleep(0.1)
                assert (await b.get("/healthz"))["calls"] == 1
                assert not [m for m in second.messages if m.get("code") == "moved"]
            finally:
                await asyncio.gather(first.close(), second.close())
