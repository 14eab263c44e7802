"""How the gateway's CPU spreads over its worker processes: `--workers 1` vs `--workers 2`.

`python -m bench.workers_spread --calls 16 --window-s 10` starts `python -m gateway`
(scripted agent, loopback ICE) once per worker count, connects the same number of
headless aiortc callers (each sending a steady quiet tone, so the agent stays silent
and the load is the uplink plus the paced silence downlink), then reads `/stats`
twice, `--window-s` apart, and prints per worker: calls, CPU cores used, and the
frames per second the callers received (50 is real time). Side by side in one run,
so both rows share the machine's load (printed too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import aiohttp

from gateway.rtc import ice
from tests.support.gateway_process import serving
from tests.support.peers import HeadlessCaller, tone_pcm


async def _stats(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/stats") as response:
        body: dict[str, Any] = await response.json()
        return body


async def measure(workers: int, calls: int, window_s: float) -> dict[str, Any]:
    callers: list[HeadlessCaller] = []
    try:
        async with (
            serving(
                "--workers", str(workers), "--agent", "gateway.agents.scripted:root_agent",
                "--session-url", "memory://", "--log-level", "WARNING", workers=workers,
            ) as gateway,
            aiohttp.ClientSession() as http,
        ):  # fmt: skip
            base = gateway.base
            callers = [HeadlessCaller() for _ in range(calls)]
            for caller in callers:
                dialed = await caller.dial(http, base)
                assert dialed.status == 201, dialed.body
            await asyncio.gather(*(c.wait_connected(30) for c in callers))
            for caller in callers:  # below the scripted agent's voice threshold
                caller.mic.play_pcm(tone_pcm(window_s + 30, amplitude=200))
            await asyncio.sleep(2.0)
            before, frames_before = await _stats(http, base), [len(c.frames) for c in callers]
            started = time.monotonic()
            await asyncio.sleep(window_s)
            after, frames_after = await _stats(http, base), [len(c.frames) for c in callers]
            elapsed = time.monotonic() - started
    finally:
        await asyncio.gather(*(c.close() for c in callers))
    cpu_before = {w["pid"]: w["cpu_s"] for w in before["workers"]}
    per_worker = [
        (w["calls"], (w["cpu_s"] - cpu_before[w["pid"]]) / elapsed) for w in after["workers"]
    ]
    rates = [(b - a) / elapsed for a, b in zip(frames_before, frames_after, strict=True)]
    return {
        "workers": workers,
        "per_worker": per_worker,
        "fps_median": statistics.median(rates),
        "fps_min": min(rates),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=16)
    parser.add_argument("--window-s", type=float, default=10.0)
    args = parser.parse_args()
    ice.restrict_host_addresses(["127.0.0.1"])
    print(f"{args.calls} calls, {args.window_s:.0f} s window, load {os.getloadavg()[0]:.1f}")
    print("| workers | calls each | CPU cores each | total cores | frames/s median | min |")
    print("| --- | --- | --- | --- | --- | --- |")
    for workers in (1, 2):
        row = await measure(workers, args.calls, args.window_s)
        calls = " / ".join(str(c) for c, _ in row["per_worker"])
        cores = " / ".join(f"{u:.2f}" for _, u in row["per_worker"])
        total = sum(u for _, u in row["per_worker"])
        print(f"| {workers} | {calls} | {cores} | {total:.2f} | {row['fps_median']:.1f} "
              f"| {row['fps_min']:.1f} |")  # fmt: skip
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
