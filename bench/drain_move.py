"""The audio gap a caller hears when its call moves off a draining gateway.

`python -m bench.drain_move --calls 10` starts two `python -m gateway` processes
(scripted agent, loopback ICE) sharing one SQLite conversation store, as two
instances share PostgreSQL; calls the first with `--calls` headless aiortc callers;
drains it (`POST /admin/drain`); and each caller moves as the web client does
(client/app.js `goingAway`): on `going_away` it offers again, to the second
gateway, with its session id, keeps the old call until the new one's first audio
frame, then hangs the old one up. Per caller: the move (from `going_away` to the
new call's first frame) and the gap (the longest time between two consecutive
frames heard, old call's or new call's, from one second before `going_away` to one
second after the switch; the gateways' paced silence is 50 frames/s, so 20 ms is
no gap). Prints median and p95 of both, and how long the drained gateway took to
exit. The balancer is left out (the callers pick the second gateway themselves):
this measures the gateways and the client's move, not a proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from gateway.rtc import ice
from tests.support.gateway_process import GatewayProcess, serving
from tests.support.peers import HeadlessCaller

SCRIPTED = "gateway.agents.scripted:root_agent"
SDP = {"Content-Type": "application/sdp"}


@contextlib.asynccontextmanager
async def gateway(store: Path, drain_s: float) -> AsyncIterator[GatewayProcess]:
    async with serving(
        "--agent", SCRIPTED, "--workers", "1", "--log-level", "WARNING",
        "--session-url", f"sqlite+aiosqlite:///{store}", "--drain-timeout", str(drain_s),
        # Every caller here is one address (loopback) and they all move at once.
        "--max-pending-calls-per-source", "1000",
    ) as process:  # fmt: skip
        yield process


async def move(
    http: aiohttp.ClientSession, old: HeadlessCaller, old_base: str, new_base: str
) -> tuple[float, float, HeadlessCaller]:
    """Follow `going_away`: (move seconds, gap seconds, the new call)."""
    going = await old.wait_message(type="going_away", limit_s=10)
    told_at = old.message_time(going)
    new = HeadlessCaller()
    dialed = await new.dial(http, new_base, f"?session_id={going['session_id']}")
    assert dialed.status == 201, dialed.body
    async with asyncio.timeout(20):
        while not new.frames:
            await asyncio.sleep(0.005)
    switched_at = new.frames[0].at
    await old.hang_up(http, old_base)
    await old.close()
    heard = sorted(
        f.at for f in itertools.chain(old.frames, new.frames)
        if told_at - 1 <= f.at <= switched_at + 1
    )  # fmt: skip
    gap = max((b - a for a, b in itertools.pairwise(heard)), default=0.0)
    return switched_at - told_at, gap, new


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


async def measure(calls: int, drain_s: float) -> None:
    with tempfile.TemporaryDirectory(prefix="drain-move-") as folder:
        store = Path(folder) / "sessions.db"
        async with (
            gateway(store, drain_s) as first,
            gateway(store, drain_s) as second,
            aiohttp.ClientSession() as http,
        ):
            callers = [HeadlessCaller() for _ in range(calls)]
            moved: list[HeadlessCaller] = []
            try:
                for caller in callers:
                    dialed = await caller.dial(http, first.base)
                    assert dialed.status == 201, dialed.body
                await asyncio.gather(*(c.wait_message(type="session", limit_s=30) for c in callers))
                await asyncio.sleep(1.0)
                async with http.post(f"{first.base}/admin/drain") as response:
                    assert response.status == 202
                drained_at = time.monotonic()
                results = await asyncio.gather(
                    *(move(http, c, first.base, second.base) for c in callers)
                )
                moved = [new for *_, new in results]
                await asyncio.wait_for(first.process.wait(), drain_s + 30)
                exit_s = time.monotonic() - drained_at
            finally:
                await asyncio.gather(*(c.close() for c in [*callers, *moved]))
                await asyncio.sleep(1.0)  # aiortc's own closing tasks finish
    moves = [m for m, _, _ in results]
    gaps = [g for _, g, _ in results]
    print(f"{calls} calls moved; load {os.getloadavg()[0]:.1f}")
    print("| | median | p95 | max |")
    print("| --- | --- | --- | --- |")
    for name, values in (("move: going_away to first frame (s)", moves), ("gap (s)", gaps)):
        print(f"| {name} | {statistics.median(values):.3f} | {p95(values):.3f} "
              f"| {max(values):.3f} |")  # fmt: skip
    print(f"the drained gateway exited {exit_s:.1f} s after the drain began")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--drain-s", type=float, default=30.0)
    args = parser.parse_args()
    ice.restrict_host_addresses(["127.0.0.1"])
    await measure(args.calls, args.drain_s)


if __name__ == "__main__":
    asyncio.run(main())
