"""`GET /metrics`: the gateway's instruments in the Prometheus text format.

One process serves its own registry (`instruments.REGISTRY`). With `--workers N`
the answering worker merges every worker's files from `PROMETHEUS_MULTIPROC_DIR`
(prometheus-client's `MultiProcessCollector`; the supervisor made the directory
and removes a dead worker's live gauges), so any worker's answer covers the whole
gateway. Why multiprocess mode rather than the shared-memory load board: counters
and histograms must not go down when a worker is restarted (Prometheus reads a
drop as a counter reset and loses the increase), and a histogram's buckets would
need a board slot each; the board stays what placement and `/stats` read.
Collected at scrape time from /proc, not stored: each worker's CPU seconds
(`gateway_worker_cpu_seconds_total{worker}`) and how many workers serve.
An admin endpoint like `/stats`: an API key is required when auth is on.
May import aiohttp, prometheus-client, the auth edge and this package.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.auth.http import EDGE_AUTH_KEY
from gateway.calls.service import WorkerLoad
from gateway.metrics.instruments import REGISTRY
from gateway.metrics.process_stats import sibling_stats

#: The environment variable prometheus-client's multiprocess mode reads.
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

Workers = Callable[[], list[WorkerLoad]]


class WorkerCollector(Collector):
    """Per-worker CPU seconds and the number of serving workers, read at scrape time."""

    def __init__(self, workers: Workers) -> None:
        self._workers = workers

    def collect(self) -> Iterator[Metric]:
        workers = self._workers()
        cpu = CounterMetricFamily(
            "gateway_worker_cpu_seconds",
            "User and system CPU seconds each gateway process has used.",
            labels=["worker", "pid"],
        )
        for index, load in enumerate(workers):
            reading = sibling_stats(load.pid, load.calls)
            if reading is not None:
                cpu.add_metric([str(index), str(load.pid)], reading.cpu_s)
        yield cpu
        serving = GaugeMetricFamily("gateway_workers", "Gateway processes serving calls.")
        serving.add_metric([], len(workers))
        yield serving


class _Own(Collector):
    """This process's registry, as one collector of the scrape's registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def metrics_text(workers: Workers) -> bytes:
    """Every instrument of the gateway, merged over its workers, as exposition text."""
    registry = CollectorRegistry()
    directory = os.environ.get(MULTIPROC_DIR_ENV)
    if directory:
        MultiProcessCollector(registry, directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Own())
    registry.register(WorkerCollector(workers))
    return generate_latest(registry)


def add_metrics_route(app: web.Application, workers: Workers) -> None:
    """Serve `GET /metrics` on `app` over the processes `workers` lists."""

    async def metrics(request: web.Request) -> web.Response:
        await request.app[EDGE_AUTH_KEY].admin(request)
        response = web.Response(body=metrics_text(workers))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app.router.add_get("/metrics", metrics)
