"""A load tester for the gateway (or any WHIP-shaped WebRTC server): part of the product.

`python -m gateway.loadtest URL` runs N headless aiortc callers, spread over worker
processes, ramped and held; each speaks a prompt in real time and measures what it
hears. See docs/loadtest.md. Library use:

    report = await run_load_test(LoadTestConfig(url="http://127.0.0.1:8080", calls=10))

Modules: `config` (options), `prompt` (WAV to Opus, once per process),
`source_track` (pre-encoded packets, paced), `headless_caller` (one WebRTC caller,
also what the project's tests and benchmarks call with), `listener` (per-packet
measurements: gaps, agent audio), `conversation` (one load-test call), `worker`
(callers in one process), `server_stats` (`GET /stats`), `report` (summary,
table), `runner` (coordinator), `cli`.
"""

from gateway.loadtest.config import LoadTestConfig, LoadTestConfigError
from gateway.loadtest.report import format_table
from gateway.loadtest.runner import LoadTestError, run_load_test

__all__ = [
    "LoadTestConfig",
    "LoadTestConfigError",
    "LoadTestError",
    "format_table",
    "run_load_test",
]
