"""The server's cost, read from outside: `GET /stats` at start, periodically, at end.

The gateway answers `{pid, calls, cpu_s, rss_bytes, at_s, workers: [{pid, calls,
cpu_s, rss_bytes, at_s}, ...]}` (`gateway.metrics.process_stats`). Readings become CPU % (CPU
seconds over wall seconds, per worker and summed) and memory. A server without
`/stats` (another WebRTC server, the echo server of the benchmarks) is measured as
far as it answers; a missing endpoint is noted, not fatal.

Imports aiohttp only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

STATS_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class WorkerReading:
    pid: int
    calls: int
    cpu_s: float
    rss_bytes: int
    at_s: float


@dataclass(frozen=True, slots=True)
class StatsReading:
    taken_at: float
    """The tester's monotonic clock when the answer arrived."""
    workers: tuple[WorkerReading, ...]

    @property
    def calls(self) -> int:
        return sum(w.calls for w in self.workers)

    @property
    def rss_bytes(self) -> int:
        return sum(w.rss_bytes for w in self.workers)


@dataclass
class ServerStatsLog:
    readings: list[StatsReading] = field(default_factory=list)
    errors: int = 0
    last_error: str = ""


def parse_stats(body: Any, taken_at: float) -> StatsReading:
    """A `/stats` answer; raises ValueError if it is not one."""
    if not isinstance(body, dict):
        raise ValueError("stats answer is not a JSON object")
    raw = body.get("workers") or [body]
    try:
        workers = tuple(
            WorkerReading(
                pid=int(w["pid"]),
                calls=int(w["calls"]),
                cpu_s=float(w["cpu_s"]),
                rss_bytes=int(w["rss_bytes"]),
                at_s=float(w["at_s"]),
            )
            for w in raw
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"stats answer lacks a field: {exc}") from None
    return StatsReading(taken_at=taken_at, workers=workers)


async def read_stats(http: aiohttp.ClientSession, base_url: str, log: ServerStatsLog) -> None:
    """One reading, appended to `log` (or an error counted)."""
    try:
        async with asyncio.timeout(STATS_TIMEOUT_S):
            async with http.get(f"{base_url}/stats") as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                body = await response.json()
        log.readings.append(parse_stats(body, time.monotonic()))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.errors += 1
        log.last_error = f"{type(exc).__name__}: {exc}"


def cpu_percent(first: StatsReading, last: StatsReading) -> dict[int, float]:
    """CPU % per worker pid between two readings (100 = one core busy)."""
    before = {w.pid: w for w in first.workers}
    out: dict[int, float] = {}
    for w in last.workers:
        prev = before.get(w.pid)
        if prev is not None and w.at_s > prev.at_s:
            out[w.pid] = 100.0 * (w.cpu_s - prev.cpu_s) / (w.at_s - prev.at_s)
    return out
