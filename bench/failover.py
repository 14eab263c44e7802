"""Crash failover as a caller lives it: kill -9 under a live call, back in conversation.

`python -m bench.failover --runs 10` measures, per run, with a headless aiortc caller
in a call with the scripted agent (sessions in one SQLite file), the gateway process
that owns the call killed with SIGKILL:

- `instance`: two `python -m gateway --workers 1` instances behind Debian's HAProxy
  (`tests.support.haproxy`, the shipped docs/deploy/haproxy.cfg: health checks every
  500 ms, redispatch on a refused connection); the instance that owns the call is
  killed. Fresh instances every run.
- `worker`: one `python -m gateway --workers 2`; the call's worker is killed (its
  supervisor restarts it; the next run waits for that).

The caller notices by the silence of its RTP (`HeadlessCaller.wait_media_lost`, 2 s;
docs/protocol.md, "Noticing a dead gateway"), re-offers with its session id at once,
and types a turn on the new call. Reported (median, p95, max over the runs), in
seconds from the kill: `noticed` (the silence detected), `back` (the new call's first
audio frame heard), `answered` (the agent's answer to that first turn, "back in
conversation"); and the audio `gap`: last packet of the old call to the first of the
new one, what the caller hears as dead air. docs/benchmarks.md, "Failover".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from gateway.rtc import ice
from tests.support.gateway_process import GatewayProcess, free_port, serving
from tests.support.haproxy import haproxy_in_front
from tests.support.peers import HeadlessCaller

SCRIPTED = ("--agent", "gateway.agents.scripted:root_agent", "--log-level", "WARNING")
TURN_TIMEOUT_S = 15.0
SERIES = ("noticed_s", "back_s", "answered_s", "gap_s")

#: Kills the process that owns the one live call; returns once it is dead.
Killer = Callable[[], Awaitable[None]]


async def say(caller: HeadlessCaller, text: str) -> float:
    """A typed turn; the arrival time of the scripted agent's answer to it."""
    await caller.wait_channel_open()
    caller.send({"type": "text", "text": text})
    answer = await caller.wait_message(
        limit_s=TURN_TIMEOUT_S, type="transcript", role="agent", text=f"You said: {text}"
    )
    return caller.message_time(answer)


async def failover_once(
    http: aiohttp.ClientSession, base: str, user: str, kill: Killer
) -> dict[str, float]:
    """One call, its owner killed, the caller back in conversation: the times."""
    caller, resumed = HeadlessCaller(), HeadlessCaller()
    try:
        dialed = await caller.dial(http, base, f"?user_id={user}")
        assert dialed.status == 201, dialed.body
        session_id = (await caller.wait_message(type="session"))["session_id"]
        await say(caller, "before")
        killed_at = time.monotonic()
        await kill()
        last_packet = await caller.wait_media_lost()
        noticed = time.monotonic()
        redial = await resumed.dial(http, base, f"?user_id={user}&session_id={session_id}")
        assert redial.status == 201, redial.body
        first_packet = await resumed.wait_media()
        answered = await say(resumed, "after")
        assert (await resumed.wait_message(type="session"))["session_id"] == session_id
        return {
            "noticed_s": noticed - killed_at,
            "back_s": first_packet - killed_at,
            "answered_s": answered - killed_at,
            "gap_s": first_packet - last_packet,
        }
    finally:
        await asyncio.gather(caller.close(), resumed.close())


async def attempt(run: Awaitable[dict[str, float]]) -> dict[str, Any]:
    """One run's times, or what went wrong (counted, not hidden)."""
    try:
        return await run
    except (AssertionError, TimeoutError, aiohttp.ClientError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


async def kill_and_reap(process: asyncio.subprocess.Process) -> None:
    os.kill(process.pid, signal.SIGKILL)
    await process.wait()


@contextlib.asynccontextmanager
async def two_instances(folder: Path) -> AsyncIterator[tuple[str, Killer]]:
    """Two instances sharing a store, HAProxy in front; the killer ends the call's owner."""
    store = f"sqlite+aiosqlite:///{folder}/sessions.db"
    ports = free_port(), free_port()
    async with (
        serving(*SCRIPTED, "--session-url", store, "--workers", "1", port=ports[0]) as a,
        serving(*SCRIPTED, "--session-url", store, "--workers", "1", port=ports[1]) as b,
        haproxy_in_front(ports) as balancer,
    ):

        async def kill() -> None:
            owner = a if (await a.get("/healthz"))["calls"] else b
            await kill_and_reap(owner.process)

        yield balancer.base, kill


async def owner_worker(gateway: GatewayProcess) -> int:
    workers = (await gateway.get("/stats"))["workers"]
    (pid,) = [w["pid"] for w in workers if w["calls"]]
    return int(pid)


async def workers_ready(gateway: GatewayProcess, workers: int) -> None:
    """Every worker serving again and no call left (the killed one restarted)."""
    async with asyncio.timeout(60):
        while True:
            with contextlib.suppress(aiohttp.ClientError, AssertionError):
                health = await gateway.get("/healthz")
                if health["workers"] == workers and health["calls"] == 0:
                    return
            await asyncio.sleep(0.2)


async def run_instances(runs: int, folder: Path) -> list[dict[str, Any]]:
    results = []
    async with aiohttp.ClientSession() as http:
        for run in range(runs):
            async with two_instances(folder / f"run-{run}") as (base, kill):
                results.append(await attempt(failover_once(http, base, f"bench-{run}", kill)))
    return results


async def run_workers(runs: int, folder: Path) -> list[dict[str, float]]:
    store = f"sqlite+aiosqlite:///{folder}/sessions.db"
    results = []
    async with (
        serving(*SCRIPTED, "--session-url", store, "--workers", "2", workers=2) as gateway,
        aiohttp.ClientSession() as http,
    ):
        for run in range(runs):
            await workers_ready(gateway, 2)

            async def kill() -> None:
                os.kill(await owner_worker(gateway), signal.SIGKILL)

            results.append(await attempt(failover_once(http, gateway.base, f"bench-{run}", kill)))
    return results


def summary(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out = {}
    for name in SERIES:
        values = np.asarray([r[name] for r in results if "error" not in r], dtype=float)
        if not len(values):
            continue
        out[name] = {
            "median": float(np.median(values)),
            "p95": float(np.percentile(values, 95)),
            "max": float(values.max()),
        }
    return out


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--mode", choices=("instance", "worker", "both"), default="both")
    parser.add_argument("--json", type=Path, help="write the runs and the summary here")
    args = parser.parse_args(argv)
    ice.restrict_host_addresses(["127.0.0.1"])
    modes = ("instance", "worker") if args.mode == "both" else (args.mode,)
    report: dict[str, Any] = {"runs": args.runs, "load_before": os.getloadavg()[0]}
    print(f"{args.runs} runs per mode, load {report['load_before']:.1f}")
    print("| killed | ok / runs | noticed | back (first frame heard) | answered | audio gap |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix="bench-failover-") as folder:
            run = run_instances if mode == "instance" else run_workers
            results = await run(args.runs, Path(folder))
        stats = summary(results)
        report[mode] = {"results": results, "summary": stats}
        cells = " | ".join(
            f"{stats[n]['median']:.2f} / {stats[n]['p95']:.2f} / {stats[n]['max']:.2f}"
            if n in stats
            else "-"
            for n in SERIES
        )
        ok = sum("error" not in r for r in results)
        print(f"| {mode} | {ok} / {len(results)} | {cells} |")
        for failed in (r["error"] for r in results if "error" in r):
            print(f"  failed run: {failed}")
    report["load_after"] = os.getloadavg()[0]
    print(f"(seconds: median / p95 / max) load after: {report['load_after']:.1f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    asyncio.run(main())
