"""From raw measurements to the numbers an operator reads: summary, table, JSON.

Statistics are over calls' events (every reply, every barge-in): median, 95th
percentile (linear interpolation) and max. Imports numpy and the tester's values.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gateway.loadtest.config import LoadTestConfig
from gateway.loadtest.results import CallOutcome, CallResult, WorkerProgress
from gateway.loadtest.server_stats import ServerStatsLog, StatsReading, cpu_percent

#: A tester process busier than this (% of one core) may be late reading packets.
SATURATED_CPU_PERCENT = 85.0
#: Share of event-loop probes more than 20 ms late (see `worker.LATE_PROBE_S`) above
#: which the tester's own lag may explain the gaps it reports.
SATURATED_LATE_PROBES_PERCENT = 1.0
#: Readings with at least this share of the peak live calls form the steady window.
STEADY_SHARE = 0.95

METRICS = (
    ("connect_s", "connect (offer to first media)"),
    ("answer_s", "SDP answer (POST to 201)"),
    ("reply_latency_s", "reply latency (prompt end to agent audio)"),
    ("barge_in_to_silence_s", "barge-in to agent silence"),
    ("interrupted_delay_s", "`interrupted` after silence"),
    ("transcript_delay_s", "agent transcript after its audio"),
    ("max_gap_s", "longest gap per call"),
)


def distribution(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "p95": None, "max": None}
    array = np.asarray(values, dtype=float)
    return {
        "n": len(values),
        "median": float(np.median(array)),
        "p95": float(np.percentile(array, 95)),
        "max": float(array.max()),
    }


@dataclass
class TesterLog:
    """The tester's own vitals: per-worker progress snapshots over the run."""

    snapshots: dict[int, list[WorkerProgress]] = field(default_factory=dict)

    def add(self, progress: WorkerProgress) -> None:
        self.snapshots.setdefault(progress.worker, []).append(progress)

    def summary(self) -> dict[str, Any]:
        per_process: list[float] = []
        peak = 0.0
        lag = 0.0
        probes = late = 0
        for snaps in self.snapshots.values():
            lag = max([lag] + [s.max_loop_lag_s for s in snaps])
            probes += snaps[-1].lag_probes
            late += snaps[-1].late_lag_probes
            if len(snaps) >= 2 and snaps[-1].at_s > snaps[0].at_s:
                span = snaps[-1].at_s - snaps[0].at_s
                per_process.append(100.0 * (snaps[-1].cpu_s - snaps[0].cpu_s) / span)
            for a, b in itertools.pairwise(snaps):
                if b.at_s > a.at_s:
                    peak = max(peak, 100.0 * (b.cpu_s - a.cpu_s) / (b.at_s - a.at_s))
        return {
            "processes": len(self.snapshots),
            "cores": len(os.sched_getaffinity(0)),
            "cpu_percent": sum(per_process),
            "cpu_percent_per_process": per_process,
            "cpu_percent_peak_process": peak,
            "max_loop_lag_s": lag,
            "late_lag_probes_percent": 100.0 * late / probes if probes else 0.0,
        }


def server_summary(log: ServerStatsLog) -> dict[str, Any]:
    readings = log.readings
    out: dict[str, Any] = {"readings": len(readings), "errors": log.errors}
    if log.last_error:
        out["last_error"] = log.last_error
    if not readings:
        return out
    peak_calls = max(r.calls for r in readings)
    steady = [r for r in readings if r.calls >= STEADY_SHARE * peak_calls] if peak_calls else []
    first, last = (steady[0], steady[-1]) if len(steady) >= 2 else (readings[0], readings[-1])
    per_worker = cpu_percent(first, last)
    total = sum(per_worker.values())
    start, rss_peak = readings[0].rss_bytes, max(r.rss_bytes for r in readings)
    out.update(
        peak_calls=peak_calls,
        workers=len(readings[-1].workers),
        steady_window_s=last.taken_at - first.taken_at,
        cpu_percent=total,
        cpu_percent_per_worker=list(per_worker.values()),
        cpu_percent_per_call=total / peak_calls if peak_calls else None,
        rss_start_bytes=start,
        rss_peak_bytes=rss_peak,
        rss_end_bytes=readings[-1].rss_bytes,
        rss_per_call_bytes=(rss_peak - start) / peak_calls if peak_calls else None,
        timeline=_timeline(readings),
    )
    return out


def _timeline(readings: list[StatsReading]) -> list[dict[str, float | int]]:
    t0 = readings[0].taken_at
    return [
        {
            "t_s": round(b.taken_at - t0, 3),
            "calls": b.calls,
            "cpu_percent": round(sum(cpu_percent(a, b).values()), 1),
            "rss_bytes": b.rss_bytes,
        }
        for a, b in itertools.pairwise(readings)
    ]


def build_report(
    config: LoadTestConfig,
    results: list[CallResult],
    server: ServerStatsLog,
    tester: TesterLog,
    wall_s: float,
) -> dict[str, Any]:
    outcomes = Counter(r.outcome for r in results)
    intervals = sum(r.frame_intervals for r in results)
    gaps = sum(r.gaps for r in results)
    tester_gaps = sum(r.tester_gaps for r in results)
    metrics: dict[str, Any] = {}
    for name, _ in METRICS:
        values: list[float] = []
        for r in results:
            if r.outcome is not CallOutcome.COMPLETED and name == "max_gap_s":
                continue
            value = getattr(r, name)
            if isinstance(value, list):
                values.extend(value)
            elif value is not None:
                values.append(value)
        metrics[name] = distribution(values)
    tester_summary = tester.summary()
    report: dict[str, Any] = {
        "config": {
            k: (str(v) if k == "prompt_path" and v is not None else v)
            for k, v in dataclasses.asdict(config).items()
        },
        "wall_s": wall_s,
        "calls": {
            "requested": config.calls,
            "completed": outcomes[CallOutcome.COMPLETED],
            "refused": outcomes[CallOutcome.REFUSED],
            "failed": outcomes[CallOutcome.FAILED],
            "retry_after_s": sorted({r.retry_after_s for r in results if r.retry_after_s}),
            "errors": dict(Counter(r.error for r in results if r.error).most_common(10)),
            "lost": [
                {"index": r.index, "at_s": r.lost_at_s, "gap_s": r.lost_gap_s}
                for r in results
                if r.lost_at_s is not None
            ],
        },
        "audio": {
            "packets": sum(r.packets for r in results),
            "lost_packets": sum(r.lost_packets for r in results),
            "frame_intervals": intervals,
            "gaps": gaps,
            "gap_percent": 100.0 * gaps / intervals if intervals else 0.0,
            "tester_gaps": tester_gaps,
            "server_gap_percent": 100.0 * (gaps - tester_gaps) / intervals if intervals else 0.0,
            "calls_with_gaps": sum(1 for r in results if r.gaps),
            "prompts": sum(r.prompts for r in results),
            "replies": sum(len(r.reply_latency_s) for r in results),
            "unanswered": sum(r.unanswered for r in results),
            "barge_ins": sum(len(r.barge_in_to_silence_s) for r in results),
            "barge_in_missed": sum(r.barge_in_missed for r in results),
            "barge_in_not_silenced": sum(r.barge_in_not_silenced for r in results),
        },
        "metrics": metrics,
        "server": server_summary(server),
        "tester": {**tester_summary, "send_restarts": sum(r.send_restarts for r in results)},
        "calls_detail": [_call_json(r) for r in results],
    }
    report["warnings"] = warnings(report)
    return report


def _call_json(result: CallResult) -> dict[str, Any]:
    data = dataclasses.asdict(result)
    data["outcome"] = result.outcome.value
    return data


def warnings(report: dict[str, Any]) -> list[str]:
    out: list[str] = []
    tester = report["tester"]
    busiest = max(tester["cpu_percent_per_process"], default=0.0)
    if busiest >= SATURATED_CPU_PERCENT or tester["cpu_percent_peak_process"] >= 100.0:
        out.append(
            f"load tester saturated: a process used {busiest:.0f} % of a core "
            f"(peak {tester['cpu_percent_peak_process']:.0f} %); gaps may be the tester's"
        )
    elif tester["cpu_percent"] >= SATURATED_CPU_PERCENT * tester["cores"]:
        out.append(f"load tester used {tester['cpu_percent']:.0f} % CPU on "
                   f"{tester['cores']} core(s); gaps may be the tester's")  # fmt: skip
    if tester["late_lag_probes_percent"] > SATURATED_LATE_PROBES_PERCENT:
        out.append(
            f"load tester event loop was > 20 ms late in {tester['late_lag_probes_percent']:.1f}"
            f" % of probes (max {tester['max_loop_lag_s'] * 1000:.0f} ms); some gaps may be "
            "the tester's, not the server's"
        )
    if tester["send_restarts"]:
        out.append(f"callers fell > 200 ms behind sending {tester['send_restarts']} time(s)")
    if report["server"].get("readings", 0) == 0:
        out.append("server /stats unavailable: no server CPU or memory figures")
    return out


def _ms(value: float | int | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def format_table(report: dict[str, Any]) -> str:
    """The summary an operator reads: outcome counts, a metrics table, server, tester."""
    calls, audio, server, tester = (
        report["calls"], report["audio"], report["server"], report["tester"]
    )  # fmt: skip
    lines = [
        f"calls: {calls['requested']} requested, {calls['completed']} completed, "
        f"{calls['refused']} refused (503), {calls['failed']} failed",
        f"audio: {audio['gaps']} gaps in {audio['frame_intervals']} frame intervals "
        f"({audio['gap_percent']:.3f} %; {audio['tester_gaps']} explained by the tester's "
        f"own stalls, leaving {audio['server_gap_percent']:.3f} %), "
        f"{audio['lost_packets']} packets lost, "
        f"{audio['replies']}/{audio['prompts']} prompts answered",
        "",
        "| metric (ms) | n | median | p95 | max |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, label in METRICS:
        d = report["metrics"][name]
        lines.append(
            f"| {label} | {d['n']} | {_ms(d['median'])} | {_ms(d['p95'])} | {_ms(d['max'])} |"
        )
    lines.append("")
    if server.get("readings"):
        per_call = server.get("cpu_percent_per_call")
        lines.append(
            f"server: {server['cpu_percent']:.0f} % CPU over {server['workers']} worker(s) "
            f"at {server['peak_calls']} calls"
            + (f" ({per_call:.2f} % per call)" if per_call is not None else "")
            + f", RSS {server['rss_start_bytes'] / 2**20:.0f} -> "
            f"{server['rss_peak_bytes'] / 2**20:.0f} MiB peak"
            + (
                f" ({server['rss_per_call_bytes'] / 2**20:.2f} MiB per call)"
                if server.get("rss_per_call_bytes") is not None
                else ""
            )
        )
    lines.append(
        f"tester: {tester['cpu_percent']:.0f} % CPU in {tester['processes']} process(es) "
        f"on {tester['cores']} core(s), loop > 20 ms late in "
        f"{tester['late_lag_probes_percent']:.1f} % of probes "
        f"(max {tester['max_loop_lag_s'] * 1000:.0f} ms)"
    )
    lines.extend(f"WARNING: {w}" for w in report["warnings"])
    if calls["lost"]:
        lost = (
            f"call {c['index']} at {c['at_s']:.1f} s, {c['gap_s']:.1f} s" for c in calls["lost"]
        )
        lines.append(
            "lost mid-call (media stopped at, then silence until noticed): "
            + "; ".join(itertools.islice(lost, 10))
        )
    if calls["errors"]:
        lines.append("errors: " + "; ".join(f"{e} x{n}" for e, n in calls["errors"].items()))
    return "\n".join(lines)
