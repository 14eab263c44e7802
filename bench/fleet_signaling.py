"""Signaling through the balancer vs straight to an instance, and Redis per call.

`python -m bench.fleet_signaling --calls 30` starts a Redis of its own, three
`python -m gateway --workers 1` instances sharing it (scripted agent, one SQLite
session store) and Debian's HAProxy with the shipped docs/deploy/haproxy.cfg in
front. Then it sets up calls one at a time (headless aiortc caller: `POST /calls`,
answer applied, media connected, a trickle `PATCH` with `If-Match`, `DELETE`), first
straight to one instance, then through HAProxy (round robin: two requests in three
reach an instance that does not own the call and proxy it to the owner), and reports
per path the median and p95 of `offer` (POST sent to 201 read), `patch` and `delete`.
Redis commands per call come from Redis' own `INFO commandstats` around the direct
calls, less the heartbeats' commands measured alone over a window as long.
docs/benchmarks.md, "Several instances".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from gateway.rtc import ice
from tests.support.gateway_process import GatewayProcess, free_port, serving
from tests.support.haproxy import haproxy_in_front
from tests.support.peers import HeadlessCaller
from tests.support.redis_server import RedisServer, redis_server

SCRIPTED = ("--agent", "gateway.agents.scripted:root_agent", "--log-level", "WARNING")
SDPFRAG = {"Content-Type": "application/trickle-ice-sdpfrag"}
CANDIDATE = "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"


@contextlib.asynccontextmanager
async def fleet(folder: Path) -> AsyncIterator[tuple[RedisServer, list[GatewayProcess], str]]:
    async with redis_server(folder) as redis, contextlib.AsyncExitStack() as stack:
        args = (
            *SCRIPTED, "--workers", "1", "--redis-url", redis.url,
            "--session-url", f"sqlite+aiosqlite:///{folder}/sessions.db",
            "--trusted-proxies", "127.0.0.1/32",
        )  # fmt: skip
        instances = [
            await stack.enter_async_context(serving(*args, port=free_port())) for _ in range(3)
        ]
        balancer = await stack.enter_async_context(
            haproxy_in_front([int(i.base.rsplit(":", 1)[1]) for i in instances])
        )
        yield redis, instances, balancer.base


async def redis_calls(redis: RedisServer) -> int:
    """Commands Redis has executed so far (`INFO commandstats`, every command)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", redis.port)
    try:
        writer.write(b"INFO commandstats\r\n")
        await writer.drain()
        size = int((await reader.readline())[1:])
        text = (await reader.readexactly(size + 2)).decode()
    finally:
        writer.close()
        await writer.wait_closed()
    total = 0
    for line in text.splitlines():
        if line.startswith("cmdstat_") and not line.startswith("cmdstat_info"):
            total += int(line.split("calls=")[1].split(",")[0])
    return total


async def one_call(http: aiohttp.ClientSession, base: str) -> dict[str, float]:
    caller = HeadlessCaller()
    try:
        started = time.perf_counter()
        result = await caller.dial(http, base, "?user_id=bench")
        offered = time.perf_counter() - started
        assert result.status == 201, result.body
        assert result.location is not None
        assert result.etag is not None
        await caller.wait_connected()
        url = result.location if result.location.startswith("http") else base + result.location
        started = time.perf_counter()
        async with http.patch(
            url, data=CANDIDATE, headers={**SDPFRAG, "If-Match": result.etag}
        ) as response:
            assert response.status == 204, await response.text()
        patched = time.perf_counter() - started
        started = time.perf_counter()
        async with http.delete(url) as response:
            assert response.status == 204, await response.text()
        deleted = time.perf_counter() - started
        return {"offer_s": offered, "patch_s": patched, "delete_s": deleted}
    finally:
        await caller.close()


def summary(samples: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for key in ("offer_s", "patch_s", "delete_s"):
        values = np.array([s[key] for s in samples]) * 1000
        out[key.removesuffix("_s") + "_ms"] = {
            "median": round(float(np.median(values)), 1),
            "p95": round(float(np.percentile(values, 95)), 1),
        }
    return out


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=30, help="calls per path")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, ice.host_addresses_restricted(["127.0.0.1"]):
        async with (
            fleet(Path(tmp)) as (redis, instances, balanced),
            aiohttp.ClientSession() as http,
        ):
            direct_base = instances[0].base
            await one_call(http, direct_base)  # warm-up: first-call costs on both paths
            await one_call(http, balanced)
            direct: list[dict[str, float]] = []
            through: list[dict[str, float]] = []
            before = await redis_calls(redis)
            started = time.perf_counter()
            for _ in range(args.calls):
                direct.append(await one_call(http, direct_base))
            direct_s = time.perf_counter() - started
            during_direct = await redis_calls(redis) - before
            for _ in range(args.calls):
                through.append(await one_call(http, balanced))
            # Heartbeats alone, over a window as long as the direct calls took.
            quiet_before = await redis_calls(redis)
            quiet_started = time.perf_counter()
            await asyncio.sleep(direct_s)
            heartbeats = (
                (await redis_calls(redis) - quiet_before)
                * direct_s
                / (time.perf_counter() - quiet_started)
            )
    per_call = (during_direct - heartbeats) / args.calls
    report = {
        "calls_per_path": args.calls,
        "direct": summary(direct),
        "through_haproxy": summary(through),
        "redis_commands_per_call": round(per_call, 1),
        "redis_heartbeat_commands_per_s": round(heartbeats / direct_s, 1),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    asyncio.run(main())
