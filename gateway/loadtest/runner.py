"""The coordinator: spread callers over processes, watch them and the server, report.

With one process the callers run in the caller's event loop (what tests use); with
more, each worker is a spawned process (`worker.worker_process`) on a pipe read by
the event loop. Once per interval it reads every worker's totals and the server's
`/stats` and hands a progress line to `on_progress`.

Imports aiohttp, multiprocessing and the tester's modules.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np

from gateway.loadtest.config import LoadTestConfig
from gateway.loadtest.prompt import encode_prompt
from gateway.loadtest.report import SATURATED_CPU_PERCENT, TesterLog, build_report
from gateway.loadtest.results import CallResult, WorkerProgress
from gateway.loadtest.server_stats import ServerStatsLog, cpu_percent, read_stats
from gateway.loadtest.worker import Worker, worker_process

#: A spawned worker imports aiortc and encodes the prompt before it is ready.
WORKER_START_TIMEOUT_S = 60.0
#: Time between "start" and the first call, so every worker has its t0 in time.
START_MARGIN_S = 0.2
JOIN_TIMEOUT_S = 5.0
#: A loop lag this large in a progress interval is flagged on the progress line.
LAG_WARNING_S = 0.1


class LoadTestError(RuntimeError):
    """The test could not run (a worker failed to start, the prompt is unusable)."""


class _RemoteWorker:
    """A spawned worker process and the messages from its pipe, read by the loop."""

    def __init__(self, number: int, indices: list[int], config: LoadTestConfig) -> None:
        context = multiprocessing.get_context("spawn")
        self.indices = indices
        self._pipe, child = context.Pipe()
        self.process = context.Process(
            target=worker_process, args=(number, indices, config, child),
            name=f"loadtest-worker-{number}", daemon=True,
        )  # fmt: skip
        self.messages: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.process.start()
        child.close()
        asyncio.get_running_loop().add_reader(self._pipe.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            self.messages.put_nowait(self._pipe.recv())
        except (EOFError, OSError):
            self._detach()
            self.messages.put_nowait(("exit", None))

    def _detach(self) -> None:
        if not self._pipe.closed:
            asyncio.get_running_loop().remove_reader(self._pipe.fileno())

    def send(self, message: tuple[str, object]) -> None:
        self._pipe.send(message)

    async def close(self) -> None:
        self._detach()
        self.process.join(0)
        if self.process.is_alive():
            await asyncio.get_running_loop().run_in_executor(
                None, self.process.join, JOIN_TIMEOUT_S
            )
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(JOIN_TIMEOUT_S)
        self._pipe.close()


def _shares(config: LoadTestConfig) -> list[list[int]]:
    """Call i goes to worker i % processes, so every worker ramps at the same pace."""
    return [list(range(k, config.calls, config.processes)) for k in range(config.processes)]


async def run_load_test(
    config: LoadTestConfig, on_progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run the test; returns the report (see `report.build_report`)."""
    server = ServerStatsLog()
    tester = TesterLog()
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        await read_stats(http, config.base_url, server)
        if config.processes == 1:
            results = await _run_here(config, http, server, tester, on_progress)
        else:
            results = await _run_spawned(config, http, server, tester, on_progress)
        await read_stats(http, config.base_url, server)
    return build_report(config, results, server, tester, time.monotonic() - started)


async def _run_here(
    config: LoadTestConfig,
    http: aiohttp.ClientSession,
    server: ServerStatsLog,
    tester: TesterLog,
    on_progress: Callable[[str], None] | None,
) -> list[CallResult]:
    worker = Worker(0, list(range(config.calls)), config, encode_prompt(config.prompt_path))
    task = asyncio.ensure_future(worker.run(time.monotonic()))
    watch = _Progress(config, server, tester, on_progress)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=config.stats_interval_s)
            tester.add(worker.progress())
            await watch.tick(http, {0: tester.snapshots[0][-1]})
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return task.result()


async def _run_spawned(
    config: LoadTestConfig,
    http: aiohttp.ClientSession,
    server: ServerStatsLog,
    tester: TesterLog,
    on_progress: Callable[[str], None] | None,
) -> list[CallResult]:
    workers = [_RemoteWorker(k, share, config) for k, share in enumerate(_shares(config))]
    try:
        for remote in workers:
            async with asyncio.timeout(WORKER_START_TIMEOUT_S):
                kind, detail = await remote.messages.get()
            if kind != "ready":
                raise LoadTestError(f"load-test worker did not start: {detail or kind}")
        t0 = time.monotonic() + START_MARGIN_S
        for remote in workers:
            remote.send(("start", t0))
        return await _collect(config, workers, http, server, tester, on_progress)
    finally:
        await asyncio.gather(*(remote.close() for remote in workers))


async def _collect(
    config: LoadTestConfig,
    workers: list[_RemoteWorker],
    http: aiohttp.ClientSession,
    server: ServerStatsLog,
    tester: TesterLog,
    on_progress: Callable[[str], None] | None,
) -> list[CallResult]:
    results: dict[int, list[CallResult]] = {}
    latest: dict[int, WorkerProgress] = {}
    watch = _Progress(config, server, tester, on_progress)
    next_tick = time.monotonic() + config.stats_interval_s
    while len(results) < len(workers):
        for number, remote in enumerate(workers):
            while not remote.messages.empty():
                kind, detail = remote.messages.get_nowait()
                if kind == "progress":
                    tester.add(detail)
                    latest[number] = detail
                elif kind == "results":
                    results[number] = detail
                elif kind == "exit" and number not in results:
                    results[number] = [
                        CallResult(index=i, error="load-test worker process died")
                        for i in remote.indices
                    ]
        if time.monotonic() >= next_tick:
            next_tick += config.stats_interval_s
            await watch.tick(http, latest)
        await asyncio.sleep(0.05)
    return sorted((r for share in results.values() for r in share), key=lambda r: r.index)


class _Progress:
    """One progress line per interval from workers' totals and a `/stats` reading."""

    def __init__(
        self,
        config: LoadTestConfig,
        server: ServerStatsLog,
        tester: TesterLog,
        on_progress: Callable[[str], None] | None,
    ) -> None:
        self._config = config
        self._server = server
        self._tester = tester
        self._emit = on_progress
        self._started = time.monotonic()

    async def tick(self, http: aiohttp.ClientSession, latest: dict[int, WorkerProgress]) -> None:
        await read_stats(http, self._config.base_url, self._server)
        if self._emit is None or not latest:
            return
        totals = list(latest.values())
        recent = [x for snaps in self._tester.snapshots.values() for x in
                  snaps[-1].recent_reply_latency_s]  # fmt: skip
        intervals = sum(p.frame_intervals for p in totals)
        gaps = sum(p.gaps for p in totals)
        line = (
            f"[{time.monotonic() - self._started:6.1f} s] calls: "
            f"{sum(p.live for p in totals)} live, {sum(p.completed for p in totals)} done, "
            f"{sum(p.refused for p in totals)} refused, {sum(p.failed for p in totals)} failed"
            f" | replies {sum(p.replies for p in totals)}"
            + (f" (median {np.median(recent) * 1000:.0f} ms)" if recent else "")
            + f" | gaps {100.0 * gaps / intervals if intervals else 0.0:.3f} %"
            + self._server_part()
            + self._tester_part()
        )
        self._emit(line)

    def _server_part(self) -> str:
        readings = self._server.readings
        if len(readings) < 2:
            return ""
        cpu = sum(cpu_percent(readings[-2], readings[-1]).values())
        return f" | server {cpu:.0f} % CPU, {readings[-1].rss_bytes / 2**20:.0f} MiB"

    def _tester_part(self) -> str:
        cpu = busiest = lag = 0.0
        for snaps in self._tester.snapshots.values():
            lag = max(lag, snaps[-1].max_loop_lag_s)
            if len(snaps) >= 2 and snaps[-1].at_s > snaps[-2].at_s:
                a, b = snaps[-2], snaps[-1]
                process = 100.0 * (b.cpu_s - a.cpu_s) / (b.at_s - a.at_s)
                cpu, busiest = cpu + process, max(busiest, process)
        saturated = busiest >= SATURATED_CPU_PERCENT or lag > LAG_WARNING_S
        return f" | tester {cpu:.0f} % CPU, lag {lag * 1000:.0f} ms" + (
            " (TESTER SATURATED: gaps may be its own)" if saturated else ""
        )


def failed_calls(report: dict[str, Any]) -> int:
    return int(report["calls"]["failed"])
