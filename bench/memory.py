"""Resident memory per additional call: a gateway subprocess, callers in this process.

    python -m bench.memory [--steps 0,10,20,40] [--agent adk|fake|both] [--json memory.json]

`adk`: the real command line, `python -m gateway --agent gateway.agents.scripted:root_agent
--session-url memory://` (ADK's runner and live flow, the scripted live model).
`fake`: the same gateway (`create_app`) serving a fake agent at our seam
(`gateway.agent_api`) that answers every 20 ms of caller audio with 20 ms of tone,
so ADK's share is the difference between the two.

Audio flows both ways in every call: each caller loops 0.5 s of tone and 0.5 s of
silence (the scripted model answers each burst with a tone and is interrupted by the
next one). The callers' receivers drop packets without decoding them (a tap in place
of the jitter buffer), to keep this process light.

For each step the number of held calls is raised to N, audio flows for `--settle`
seconds, then `GET /stats` is read 3 times 1 s apart (median rss_bytes). The slope
is a least-squares fit of RSS against calls. A warm-up call runs first and is hung
up, so lazy imports and first-call caches are in the 0-call baseline.

`--tracemalloc` (fake or adk) starts the gateway under `python -X tracemalloc=1` via
`bench.memory serve` and prints the allocation sites that grew most between the
first and the last step (Python allocations only; libopus, libswresample and OpenSSL
allocate outside Python's view).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from gateway.agent_api import AgentAudio, AgentEvent, Modality
from gateway.audio.formats import AGENT_OUTPUT_RATE_HZ, WEBRTC_RATE_HZ
from gateway.audio.pcm import tone
from gateway.loadtest.headless_caller import HeadlessCaller
from gateway.loadtest.prompt import FRAME_SAMPLES, encode_pcm
from gateway.rtc import ice
from tests.support.gateway_process import free_port, serving

MiB = 1 << 20


def _pattern_payloads() -> list[bytes]:
    """0.5 s of 300 Hz tone then 0.5 s of silence, as 20 ms Opus payloads (a caller
    loops it: the encoding is done once, not per caller)."""
    pcm = tone(0.5, WEBRTC_RATE_HZ, 300.0, 6000) + bytes(WEBRTC_RATE_HZ)  # + 0.5 s quiet
    return encode_pcm(np.frombuffer(pcm, dtype="<i2"))[: len(pcm) // 2 // FRAME_SAMPLES]


PATTERN = _pattern_payloads()


@dataclass
class Caller:
    """A caller looping the pattern; its receiver only counts packets (no decoding)."""

    packets: int = 0
    caller: HeadlessCaller = field(init=False)

    def __post_init__(self) -> None:
        self.caller = HeadlessCaller(packet_listener=self._count)
        self.caller.mic.loop(PATTERN)

    def _count(self, _: object) -> None:
        self.packets += 1

    async def connect(self, http: aiohttp.ClientSession, base: str) -> None:
        dialed = await self.caller.dial(http, base)
        if dialed.status != 201:
            raise RuntimeError(f"offer refused: {dialed.status} {dialed.body}")
        await self.caller.wait_connected(15)

    async def close(self, http: aiohttp.ClientSession, base: str) -> None:
        await self.caller.hang_up(http, base)
        await self.caller.close()


@contextlib.asynccontextmanager
async def gateway_process(
    agent: str, port: int, traced: bool, session_url: str = "memory://"
) -> AsyncIterator[str]:
    """A gateway subprocess serving `agent`; yields its base URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GATEWAY_"))}
    log = Path(tempfile.gettempdir()) / f"bench-memory-{port}.log"
    if agent == "adk" and not traced:
        started = serving(
            "--agent", "gateway.agents.scripted:root_agent", "--session-url", session_url,
            "--max-calls", "200", "--log-level", "WARNING", "--workers", "1",
            env=env, log=log, port=port,
        )  # fmt: skip
    else:
        extra = ["--tracemalloc"] if traced else []
        started = serving(
            "serve", "--agent", agent, *extra, module="bench.memory", env=env, log=log, port=port
        )
    async with started as gateway:
        yield gateway.base


async def read_rss(http: aiohttp.ClientSession, base: str, readings: int = 3) -> dict[str, Any]:
    values, calls = [], 0
    for i in range(readings):
        if i:
            await asyncio.sleep(1.0)
        async with http.get(f"{base}/stats") as response:
            stats = await response.json()
        values.append(stats["rss_bytes"])
        calls = stats["calls"]
    return {"calls": calls, "rss_bytes": int(statistics.median(values))}


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares bytes per call."""
    xs = np.array([p[0] for p in points], dtype=np.float64)
    ys = np.array([p[1] for p in points], dtype=np.float64)
    return float(np.polyfit(xs, ys, 1)[0])


async def measure(
    agent: str,
    steps: list[int],
    settle_s: float,
    traced: bool,
    hold_s: float = 0.0,
    session_url: str = "memory://",
) -> dict[str, Any]:
    ice.restrict_host_addresses(["127.0.0.1"])
    port = free_port()
    callers: list[Caller] = []
    points: list[dict[str, Any]] = []
    async with (
        gateway_process(agent, port, traced, session_url) as base,
        aiohttp.ClientSession() as http,
    ):
        try:
            warm = [Caller(), Caller()]
            for caller in warm:
                await caller.connect(http, base)
            await asyncio.sleep(settle_s)
            for caller in warm:
                await caller.close(http, base)
            await asyncio.sleep(1.0)
            if traced:
                await http.post(f"{base}/bench/snapshot")
            for target in steps:
                while len(callers) < target:
                    batch = [Caller() for _ in range(min(5, target - len(callers)))]
                    callers += batch
                    await asyncio.gather(*(c.connect(http, base) for c in batch))
                await asyncio.sleep(settle_s)
                reading = await read_rss(http, base)
                reading["packets_in_per_caller"] = min(c.packets for c in callers) if callers else 0
                points.append(reading)
                print(
                    f"{agent}: {reading['calls']:>3} calls  rss {reading['rss_bytes'] / MiB:7.1f}"
                    f" MiB  (callers got >= {reading['packets_in_per_caller']} packets)",
                    flush=True,
                )
            hold = await hold_calls(http, base, len(callers), hold_s) if hold_s else None
            top = None
            if traced:
                async with http.get(f"{base}/bench/top") as response:
                    top = await response.text()
        finally:
            await asyncio.gather(*(c.close(http, base) for c in callers))
    fit = slope([(p["calls"], p["rss_bytes"]) for p in points])
    return {"agent": agent, "points": points, "bytes_per_call": fit, "hold": hold, "top": top}


async def hold_calls(
    http: aiohttp.ClientSession, base: str, calls: int, hold_s: float
) -> dict[str, Any]:
    """Keep the calls going for `hold_s`, reading RSS every 10 s: growth per call-minute
    (what a long call accumulates: agent turns, session events, buffers)."""
    readings: list[tuple[float, int]] = []
    started = time.monotonic()
    while True:
        async with http.get(f"{base}/stats") as response:
            readings.append((time.monotonic() - started, (await response.json())["rss_bytes"]))
        if readings[-1][0] >= hold_s:
            break
        await asyncio.sleep(min(10.0, hold_s - readings[-1][0]))
    xs = np.array([r[0] for r in readings])
    ys = np.array([r[1] for r in readings], dtype=np.float64)
    per_s = float(np.polyfit(xs, ys, 1)[0]) if len(readings) > 1 else 0.0
    per_call_minute = per_s * 60 / calls if calls else 0.0
    print(
        f"held {calls} calls {hold_s:.0f} s: rss {ys[0] / MiB:.1f} -> {ys[-1] / MiB:.1f} MiB,"
        f" {per_call_minute / 1024:.0f} KiB per call-minute",
        flush=True,
    )
    return {"calls": calls, "readings": readings, "bytes_per_call_minute": per_call_minute}


# --- the gateway side of --agent fake and --tracemalloc ---------------------------


@dataclass
class ToneSession:
    """Answers each chunk of caller audio with as much tone, as it arrives."""

    session_id: str = "memory-bench"
    queue: asyncio.Queue[AgentEvent | None] = field(default_factory=lambda: asyncio.Queue(64))
    reply: bytes = b""

    def send_audio(self, pcm: bytes) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(AgentAudio(self.reply[: len(pcm) * 3 // 2]))

    def send_text(self, text: str) -> None:
        pass

    async def events(self) -> AsyncIterator[AgentEvent]:
        while (event := await self.queue.get()) is not None:
            yield event


class ToneAgent:
    def __init__(self) -> None:
        t = np.arange(AGENT_OUTPUT_RATE_HZ // 10) / AGENT_OUTPUT_RATE_HZ
        self._reply = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()

    @contextlib.asynccontextmanager
    async def open_session(
        self, *, user_id: str, session_id: str | None, modality: Modality, call_id: str = ""
    ) -> AsyncIterator[ToneSession]:
        session = ToneSession(reply=self._reply)
        try:
            yield session
        finally:
            session.queue.put_nowait(None)


def serve(agent: str, port: int, traced: bool) -> None:
    """A gateway like the command line's, serving `agent`, with tracemalloc routes."""
    from gateway.app import add_adk_lifecycle, build_adk_connector, create_app
    from gateway.config import load_settings

    logging.basicConfig(level=logging.WARNING)
    settings = load_settings(
        {
            "ice_addresses": "127.0.0.1",
            "port": port,
            "max_calls": 200,
            "agent": "gateway.agents.scripted:root_agent",
            "session_url": "memory://",
        },
        environ={},
    )
    if agent == "adk":
        connector = build_adk_connector(settings)
        app = create_app(settings, connector)
        add_adk_lifecycle(app, connector)
    else:
        app = create_app(settings, ToneAgent())
    if traced:  # after the imports: only what is allocated from now on is traced
        tracemalloc.start(12)
        _add_trace_routes(app)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def _add_trace_routes(app: web.Application) -> None:
    baseline: list[tracemalloc.Snapshot] = []

    async def snapshot(_: web.Request) -> web.Response:
        baseline[:] = [tracemalloc.take_snapshot()]
        return web.Response(text="ok")

    async def top(_: web.Request) -> web.Response:
        current = tracemalloc.take_snapshot()
        lines = [f"traced now {tracemalloc.get_traced_memory()[0] / MiB:.1f} MiB"]
        if baseline:
            diff = current.compare_to(baseline[0], "traceback")
            for stat in diff[:25]:
                lines.append(f"{stat.size_diff / 1024:+9.0f} KiB {stat.count_diff:+7d} blocks")
                lines += ["      " + line for line in stat.traceback.format(limit=6)]
        return web.Response(text="\n".join(lines))

    app.router.add_post("/bench/snapshot", snapshot)
    app.router.add_get("/bench/top", top)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        sp = argparse.ArgumentParser()
        sp.add_argument("serve")
        sp.add_argument("--agent", choices=("adk", "fake"), default="fake")
        sp.add_argument("--port", type=int, required=True)
        sp.add_argument("--tracemalloc", action="store_true")
        sargs = sp.parse_args(argv)
        serve(sargs.agent, sargs.port, sargs.tracemalloc)
        return []
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="0,10,20,40", help="calls held at each step")
    parser.add_argument("--agent", choices=("adk", "fake", "both"), default="both")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of audio per step")
    parser.add_argument(
        "--hold", type=float, default=0.0, help="then hold the last step's calls this long"
    )
    parser.add_argument(
        "--session-url", default="memory://", help="the ADK variant's session store"
    )
    parser.add_argument("--tracemalloc", action="store_true", help="where the memory goes")
    parser.add_argument("--json", type=Path, default=Path("memory.json"))
    parser.add_argument("--quick", action="store_true", help="steps 0,2,4, 2 s (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.settle = "0,2,4", 2.0
    steps = [int(s) for s in args.steps.split(",")]
    logging.basicConfig(level=logging.WARNING)
    results = []
    for agent in ("adk", "fake") if args.agent == "both" else (args.agent,):
        results.append(
            asyncio.run(
                measure(agent, steps, args.settle, args.tracemalloc, args.hold, args.session_url)
            )
        )
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} on {os.cpu_count()} CPUs")
    print("| agent | " + " | ".join(f"{n} calls" for n in steps) + " | per call (fit) |")
    print("| --- |" + " ---: |" * (len(steps) + 1))
    for r in results:
        cells = " | ".join(f"{p['rss_bytes'] / MiB:.1f} MiB" for p in r["points"])
        print(f"| {r['agent']} | {cells} | {r['bytes_per_call'] / MiB:.2f} MiB |")
    for r in results:
        if r["top"]:
            print(f"\n--- {r['agent']}: Python allocations grown since the 0-call baseline ---")
            print(r["top"])
    args.json.write_text(json.dumps({"load_average": load, "results": results}, indent=2))
    print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
