"""A share of the callers in one process and one event loop, with its own vitals.

`run_callers` starts call i at `t0 + i / rate` (monotonic clock, which all processes
on a host share), keeps progress totals, and measures the worker's own CPU time and
event-loop lag: a tester that lags produces false gaps, so it must say when it does.
`worker_process` is the entry point of a spawned worker; it talks to the coordinator
over a pipe: "ready" -> t0 -> progress every interval -> results.

Imports aiohttp and the load tester's modules.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

import aiohttp

from gateway.loadtest.config import LoadTestConfig
from gateway.loadtest.conversation import LoadTestCall
from gateway.loadtest.prompt import EncodedPrompt, encode_prompt
from gateway.loadtest.results import CallOutcome, CallResult, WorkerProgress
from gateway.loadtest.stalls import LoopStalls
from gateway.rtc import ice

logger = logging.getLogger(__name__)


def process_cpu_s() -> float:
    """User + system CPU of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Worker:
    """Runs calls `indices` of the test; `progress()` reads its totals at any time."""

    def __init__(
        self, worker: int, indices: list[int], config: LoadTestConfig, prompt: EncodedPrompt
    ) -> None:
        self._indices = indices
        self._config = config
        self._prompt = prompt
        self._live: dict[int, LoadTestCall] = {}
        self._totals = WorkerProgress(worker=worker)
        self.stalls = LoopStalls()
        self._reported: dict[int, int] = {}  # reply latencies already in a progress line
        self.results: list[CallResult] = []

    def progress(self) -> WorkerProgress:
        """Totals so far (ended calls plus live ones); resets the recent values."""
        t = self._totals
        snapshot = WorkerProgress(
            worker=t.worker, started=t.started, live=len(self._live), completed=t.completed,
            refused=t.refused, failed=t.failed, replies=t.replies,
            recent_reply_latency_s=list(t.recent_reply_latency_s),
            frame_intervals=t.frame_intervals, gaps=t.gaps,
            cpu_s=process_cpu_s(), at_s=time.monotonic(),
            max_loop_lag_s=self.stalls.take_recent_max(),
            lag_probes=self.stalls.probes, late_lag_probes=self.stalls.late_probes,
        )  # fmt: skip
        for index, session in self._live.items():
            snapshot.frame_intervals += session.monitor.intervals
            snapshot.gaps += session.monitor.gaps
            latencies = session.result.reply_latency_s
            snapshot.replies += len(latencies)
            snapshot.recent_reply_latency_s.extend(latencies[self._reported.get(index, 0) :])
            self._reported[index] = len(latencies)
        t.recent_reply_latency_s = []
        return snapshot

    async def run(self, t0: float) -> list[CallResult]:
        addresses = self._config.effective_ice_addresses()
        if addresses:  # process-wide; empty leaves whatever the process uses
            ice.restrict_host_addresses(addresses)
        connector = aiohttp.TCPConnector(limit=0)
        probe = asyncio.ensure_future(self.stalls.watch())
        try:
            async with (
                aiohttp.ClientSession(connector=connector) as http,
                asyncio.TaskGroup() as group,
            ):
                for index in self._indices:
                    group.create_task(self._call(http, index, t0), name=f"loadtest/{index}")
        finally:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
        self.results.sort(key=lambda r: r.index)
        return self.results

    async def _call(self, http: aiohttp.ClientSession, index: int, t0: float) -> None:
        await asyncio.sleep(max(0.0, t0 + index / self._config.rate - time.monotonic()))
        session = LoadTestCall(index, self._config, self._prompt, self.stalls)
        self._live[index] = session
        self._totals.started += 1
        try:
            result = await session.run(http)
        finally:
            del self._live[index]
        t = self._totals
        t.recent_reply_latency_s.extend(result.reply_latency_s[self._reported.pop(index, 0) :])
        t.completed += result.outcome is CallOutcome.COMPLETED
        t.refused += result.outcome is CallOutcome.REFUSED
        t.failed += result.outcome is CallOutcome.FAILED
        t.replies += len(result.reply_latency_s)
        t.frame_intervals += result.frame_intervals
        t.gaps += result.gaps
        t.tester_gaps += result.tester_gaps
        self.results.append(result)


def worker_process(
    worker: int, indices: list[int], config: LoadTestConfig, pipe: Connection
) -> None:
    """Spawned worker: encode the prompt, say ready, wait for t0, run, send results."""
    logging.basicConfig(level=logging.WARNING)
    try:
        prompt = encode_prompt(config.prompt_path)
    except ValueError as exc:
        pipe.send(("error", str(exc)))
        return
    pipe.send(("ready", None))
    kind, t0 = pipe.recv()
    if kind != "start":
        return
    runner = Worker(worker, indices, config, prompt)
    try:
        results = asyncio.run(_run_reporting(runner, t0, pipe.send, config.stats_interval_s))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole group; calls were hung up
        return
    pipe.send(("results", results))


async def _run_reporting(
    runner: Worker, t0: float, send: Callable[[tuple[str, object]], None], interval_s: float
) -> list[CallResult]:
    async def report() -> None:
        while True:
            await asyncio.sleep(interval_s)
            send(("progress", runner.progress()))

    reporter = asyncio.ensure_future(report())
    try:
        return await runner.run(t0)
    finally:
        reporter.cancel()
        await asyncio.gather(reporter, return_exceptions=True)
        send(("progress", runner.progress()))
