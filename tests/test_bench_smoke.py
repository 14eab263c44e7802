"""Smoke runs of the latency and memory benchmarks (their instruments, not targets).

- bench.latency finds every uplink burst, downlink reply and barge-in it caused, at
  the gateway tap, the agent seam and the caller tap, and leaves nothing running;
- bench.memory reads the resident memory of a gateway subprocess at each step.
Targets are checked by the benchmarks themselves (docs/benchmarks.md), not here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench import latency, memory


@pytest.mark.timeout(60)
async def test_latency_bench_finds_every_trial() -> None:
    trials = 3
    report = await latency.run(argparse.Namespace(agent="fake", trials=trials, seed=1))
    series = {s["name"]: s for s in report["series"]}
    assert series["fake: uplink tap -> seam"]["n"] == trials
    # Each barge-in trial starts with a reply from silence: two downlink onsets per trial.
    assert series["fake: downlink seam -> wire"]["n"] == 2 * trials
    assert series["fake: barge-in seam -> wire"]["n"] == trials
    for s in series.values():
        assert s["discarded"] == 0, s
        assert 0 <= s["median_ms"] < 1000, s


@pytest.mark.timeout(60)
def test_memory_bench_reads_rss_per_step(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    results = memory.main(
        ["--agent", "fake", "--steps", "0,2", "--settle", "1", "--json", str(out)]
    )
    (result,) = results
    assert [p["calls"] for p in result["points"]] == [0, 2]
    assert all(p["rss_bytes"] > 10 * memory.MiB for p in result["points"])
    assert result["points"][1]["packets_in_per_caller"] > 0  # audio came back
    assert out.exists()
