"""Capacity sweep: calls per core, the gateway and a plain aiortc echo server side by side.

For each N in a list, each server in turn is started pinned to one core (`taskset -c
1`), the load tester (`python -m gateway.loadtest`) runs N callers pinned to the other
core (`taskset -c 0`) and the server is stopped again. The gateway serves the scripted
agent (`gateway.agents.scripted:root_agent`: ADK's live flow with a near-free model, so
the gateway's own cost is what is measured); the echo server (`bench.echo_server`) is
what a plain aiortc app costs. Recorded per point: gaps (% of frame intervals), refused
and failed calls, server CPU % and memory (from `GET /stats`), reply latency, and the
load tester's own CPU and event-loop lateness (a lagging tester makes false gaps).

Capacity = the largest N with gaps < 0.1 % of frame intervals and no refused or
failed call, counting the gaps the load tester does not attribute to its own
event-loop stalls (`gateway.loadtest.stalls`; both figures are in the table).
Past a point with gaps >= 5 % a server is not swept further.

`offline` and `offline-pocketsphinx` serve the default agent on the offline model
(`local-live`: Whisper, or pocketsphinx via `GATEWAY_LOCAL_RECOGNIZER`): every turn of
the shipped prompt ("what is the weather like today") is recognized, answered and
synthesized on the server's core.

    python -m bench.capacity                                  # N = 10..80, 40 s per call
    python -m bench.capacity --servers offline,offline-pocketsphinx --calls 2,4,6,8,10
    python -m bench.capacity --calls 10,20,40,60 --duration 20 \\
        --json var/capacity.json --plot docs/capacity.png
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support import REPO_ROOT
from tests.support.gateway_process import free_port

DEFAULT_CALLS = (10, 20, 30, 40, 50, 60, 70, 80)
GAP_LIMIT_PERCENT = 0.1
#: A point this bad ends the sweep for that server: higher N only gets worse.
GIVE_UP_GAP_PERCENT = 5.0
SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_TIMEOUT_S = 15.0
SERVERS = ("gateway", "echo")
#: The default agent on the offline model, by recognizer (`GATEWAY_LOCAL_RECOGNIZER`).
OFFLINE_SERVERS = {"offline": "whisper", "offline-pocketsphinx": "pocketsphinx"}


@dataclass
class Point:
    server: str
    calls: int
    completed: int = 0
    refused: int = 0
    failed: int = 0
    gap_percent: float | None = None
    """All gaps, % of frame intervals."""
    server_gap_percent: float | None = None
    """Gaps not explained by the load tester's own event-loop stalls."""
    max_gap_ms: float | None = None
    lost_packets: int = 0
    reply_latency_ms_median: float | None = None
    reply_latency_ms_p95: float | None = None
    server_cpu_percent: float | None = None
    server_rss_peak_mib: float | None = None
    server_rss_per_call_mib: float | None = None
    tester_cpu_percent: float | None = None
    tester_late_probes_percent: float | None = None
    warnings: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def clean(self) -> bool:
        return (
            self.server_gap_percent is not None
            and self.server_gap_percent < GAP_LIMIT_PERCENT
            and self.refused == 0
            and self.failed == 0
            and not self.error
        )


def pinned(core: int) -> list[str]:
    """`taskset -c core` when there is a taskset and more than one core to pin to."""
    if shutil.which("taskset") and len(os.sched_getaffinity(0)) > 1:
        return ["taskset", "-c", str(core)]
    return []


def gateway_has_workers_option() -> bool:
    help_text = subprocess.run(
        [sys.executable, "-m", "gateway", "--help"], capture_output=True, text=True, cwd=REPO_ROOT
    ).stdout
    return "--workers" in help_text


def server_command(server: str, port: int, workers_option: bool) -> list[str]:
    if server == "echo":
        return [sys.executable, "-m", "bench.echo_server", "--port", str(port)]
    agent = "default" if server in OFFLINE_SERVERS else "scripted"
    command = [
        sys.executable, "-m", "gateway", "--agent", f"gateway.agents.{agent}:root_agent",
        "--host", "127.0.0.1", "--port", str(port), "--max-calls", "10000",
        "--log-level", "WARNING", "--session-url", "memory://",
    ]  # fmt: skip
    return command + (["--workers", "1"] if workers_option else [])


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before serving")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not answer /healthz in time")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_point(server: str, calls: int, args: argparse.Namespace, workers: bool) -> Point:
    point = Point(server=server, calls=calls)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GATEWAY_ICE_ADDRESSES": "127.0.0.1", "PYTHONPATH": str(REPO_ROOT)}
    if server in OFFLINE_SERVERS:
        env["GATEWAY_LOCAL_RECOGNIZER"] = OFFLINE_SERVERS[server]
    with tempfile.TemporaryDirectory() as tmp:
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            pinned(1) + server_command(server, port, workers),
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_healthy(url, process)
            report_path = Path(tmp) / "report.json"
            command = [
                *pinned(0), sys.executable, "-m", "gateway.loadtest", url,
                "--calls", str(calls), "--rate", str(args.rate),
                "--duration", str(args.duration), "--processes", str(args.processes),
                "--reply-timeout", "2.5", "--report", str(report_path), "--quiet",
            ]  # fmt: skip
            tester = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
            if not report_path.exists():
                point.error = tester.stderr.strip().splitlines()[-1] if tester.stderr else "?"
                return point
            fill(point, json.loads(report_path.read_text()))
        except RuntimeError as exc:
            point.error = str(exc)
        finally:
            stop(process)
            log.close()
    return point


def fill(point: Point, report: dict[str, Any]) -> None:
    calls, audio, metrics = report["calls"], report["audio"], report["metrics"]
    server, tester = report["server"], report["tester"]
    point.completed, point.refused, point.failed = (
        calls["completed"], calls["refused"], calls["failed"]
    )  # fmt: skip
    point.gap_percent = audio["gap_percent"]
    point.server_gap_percent = audio["server_gap_percent"]
    point.lost_packets = audio["lost_packets"]
    max_gap = metrics["max_gap_s"]["max"]
    point.max_gap_ms = None if max_gap is None else max_gap * 1000
    reply = metrics["reply_latency_s"]
    if reply["n"]:
        point.reply_latency_ms_median = reply["median"] * 1000
        point.reply_latency_ms_p95 = reply["p95"] * 1000
    if server.get("readings"):
        point.server_cpu_percent = server["cpu_percent"]
        point.server_rss_peak_mib = server["rss_peak_bytes"] / 2**20
        if server.get("rss_per_call_bytes") is not None:
            point.server_rss_per_call_mib = server["rss_per_call_bytes"] / 2**20
    point.tester_cpu_percent = tester["cpu_percent"]
    point.tester_late_probes_percent = tester["late_lag_probes_percent"]
    point.warnings = report["warnings"]


def capacity(points: list[Point], server: str) -> int:
    return max((p.calls for p in points if p.server == server and p.clean), default=0)


def cpu_comparison(points: list[Point]) -> list[str]:
    """Server CPU per call at the smallest N where neither server was saturated:
    less sensitive to a noisy machine than the gap threshold."""
    per_call: dict[int, dict[str, float]] = {}
    for p in points:
        if p.server_cpu_percent is not None and p.server_cpu_percent < 90 and p.completed:
            per_call.setdefault(p.calls, {})[p.server] = p.server_cpu_percent / p.completed
    both = sorted(n for n, servers in per_call.items() if set(SERVERS) <= set(servers))
    if not both:
        return []
    n = both[0]
    gateway, echo = per_call[n]["gateway"], per_call[n]["echo"]
    return [
        f"Server CPU per call at {n} calls: gateway {gateway:.2f} %, plain aiortc echo "
        f"{echo:.2f} % of a core (echo / gateway = {echo / gateway:.1f}x).",
        "",
    ]


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(points: list[Point]) -> str:
    lines = [
        "| server | calls | gaps % (all / not the tester's) | max gap ms | refused | failed | "
        "server CPU % | RSS MiB | MiB/call | reply ms (median / p95) | tester CPU % | "
        "tester late % |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in points:
        reply = (
            "-"
            if p.reply_latency_ms_median is None
            else f"{p.reply_latency_ms_median:.0f} / {_fmt(p.reply_latency_ms_p95)}"
        )
        gaps = (
            f"{_fmt(p.gap_percent, 3)} / {_fmt(p.server_gap_percent, 3)}"
            if not p.error
            else f"error: {p.error}"
        )
        lines.append(
            f"| {p.server} | {p.calls} | {gaps} | {_fmt(p.max_gap_ms)} | {p.refused} | "
            f"{p.failed} | {_fmt(p.server_cpu_percent)} | {_fmt(p.server_rss_peak_mib)} | "
            f"{_fmt(p.server_rss_per_call_mib, 2)} | {reply} | {_fmt(p.tester_cpu_percent)} | "
            f"{_fmt(p.tester_late_probes_percent, 1)} |"
        )
    gateway, echo = capacity(points, "gateway"), capacity(points, "echo")
    ratio = f"{gateway / echo:.1f}x" if echo else "n/a"
    lines += ["", *cpu_comparison(points)]
    lines += [
        f"Capacity (gaps not explained by the tester < {GAP_LIMIT_PERCENT} % of frame "
        f"intervals, nothing refused or failed), one core: gateway {gateway} calls, "
        f"plain aiortc echo {echo} calls (ratio {ratio}).",
    ]
    return "\n".join(lines)


def plot(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (gaps_ax, cpu_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for server, style in zip(SERVERS, ("o-", "s--"), strict=True):
        mine = [p for p in points if p.server == server and p.gap_percent is not None]
        label = "gateway (scripted agent)" if server == "gateway" else "plain aiortc echo"
        gaps_ax.plot([p.calls for p in mine], [max(p.server_gap_percent or 0, 1e-3) for p in mine],
                     style, label=label)  # fmt: skip
        cpu_ax.plot([p.calls for p in mine], [p.server_cpu_percent or 0 for p in mine],
                    style, label=label)  # fmt: skip
    gaps_ax.axhline(GAP_LIMIT_PERCENT, color="grey", linestyle=":", label="0.1 % limit")
    gaps_ax.set(xlabel="concurrent calls (server on one core)", ylabel="gaps, % of frame "
                "intervals", yscale="log", title="Audio gaps (not the tester's)")  # fmt: skip
    cpu_ax.axhline(100, color="grey", linestyle=":")
    cpu_ax.set(xlabel="concurrent calls (server on one core)", ylabel="server CPU %",
               title="Server CPU")  # fmt: skip
    for ax in (gaps_ax, cpu_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default=",".join(map(str, DEFAULT_CALLS)),
                        help="comma-separated numbers of concurrent calls")  # fmt: skip
    parser.add_argument("--servers", default=",".join(SERVERS), help="gateway,echo")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds each call is held")
    parser.add_argument("--rate", type=float, default=10.0, help="new calls per second")
    parser.add_argument("--processes", type=int, default=2, help="load-tester processes")
    parser.add_argument("--json", type=Path, help="write the points here")
    parser.add_argument("--plot", type=Path, help="write a PNG plot here")
    parser.add_argument("--keep-going", action="store_true",
                        help=f"go on past gaps >= {GIVE_UP_GAP_PERCENT} %%")  # fmt: skip
    args = parser.parse_args(argv)
    sweep = [int(n) for n in args.calls.split(",") if n]
    servers = [s for s in args.servers.split(",") if s]
    if not sweep or any(n < 1 for n in sweep) or not set(servers) <= {*SERVERS, *OFFLINE_SERVERS}:
        parser.error(
            "--calls needs positive integers, --servers gateway, echo, offline "
            "and/or offline-pocketsphinx"
        )
    workers = gateway_has_workers_option()
    load_before = os.getloadavg()
    points: list[Point] = []
    given_up: set[str] = set()
    for calls in sweep:
        for server in servers:
            if server in given_up:
                continue
            point = run_point(server, calls, args, workers)
            points.append(point)
            print(f"{server} {calls}: gaps {_fmt(point.gap_percent, 3)} % "
                  f"({_fmt(point.server_gap_percent, 3)} % not the tester's), "
                  f"CPU {_fmt(point.server_cpu_percent)} % {point.error}",
                  file=sys.stderr, flush=True)  # fmt: skip
            if not args.keep_going and (point.server_gap_percent or 0) >= GIVE_UP_GAP_PERCENT:
                given_up.add(server)
    load_after = os.getloadavg()
    print(markdown(points))
    print(f"\nLoad average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f}; "
          f"server pinned: {' '.join(pinned(1)) or 'no'}; tester pinned: "
          f"{' '.join(pinned(0)) or 'no'}; gateway --workers 1: {workers}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summary = {
            "points": [asdict(p) | {"clean": p.clean} for p in points],
            "capacity": {s: capacity(points, s) for s in servers},
            "duration_s": args.duration, "rate": args.rate, "processes": args.processes,
            "load_average_before": load_before, "load_average_after": load_after,
        }  # fmt: skip
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    if args.plot:
        plot(points, args.plot)


if __name__ == "__main__":
    main()
