"""Where the gateway's CPU goes: CPU per call per 20 ms, side by side, plus py-spy.

    python -m bench.profile_calls --calls 20 --agent fake --agent scripted \\
        --code before=/tmp/perf-base --code after=. [--profile /tmp/profiles]

For each code tree (`--code label=dir`, the `gateway` package found there) and each
agent (`fake`: a fake at our agent seam, no ADK; `scripted`: `scripted-live` behind
ADK's runner), it starts `bench.gateway_under_test` in a subprocess with that tree
first on PYTHONPATH, and K cheap callers (`bench.load_callers`) in another process,
so the callers' CPU is not counted. After the ramp and a warm-up it reads the
gateway's `GET /stats` CPU over a window (all threads) and both processes' worst
event-loop stall; gaps count from 1 s after the last call started; with `--profile` it then
records the gateway with `py-spy` (raw stacks, plus a speedscope file) and prints
the functions with the most samples. Runs are interleaved `--repeat` times and the
table shows medians. Prints a Markdown table; `--json` writes every run.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.support import REPO_ROOT

FRAME_MS = 20.0


@dataclass
class Run:
    label: str
    agent: str
    calls: int
    cpu_s: float
    window_s: float
    load_avg: float
    gap_intervals: int = 0
    intervals: int = 0
    voiced: int = 0
    packets: int = 0
    refused: int = 0
    max_gap_ms: float = 0.0
    gateway_stall_ms: float = 0.0
    callers_stall_ms: float = 0.0

    @property
    def ms_per_call_frame(self) -> float:
        """Gateway CPU per call per 20 ms, both directions together."""
        return 1000 * self.cpu_s / (self.calls * self.window_s / (FRAME_MS / 1000))


def stats(port: int, path: str = "/stats") -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        data: dict[str, float] = json.load(response)
    return data


def start_gateway(code: Path, agent: str, port: int, loop: str) -> subprocess.Popen[str]:
    # `python -m` puts the working directory first on sys.path: run in the code tree.
    env = {**os.environ, "PYTHONPATH": f"{code.resolve()}:{REPO_ROOT}"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.gateway_under_test",
            "--agent",
            agent,
            "--port",
            str(port),
            "--loop",
            loop,
        ],
        env=env,
        cwd=code.resolve(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("ready") or not line.split()[-1].startswith(str(code.resolve())):
        process.kill()
        raise RuntimeError(f"gateway did not start from {code}: {line!r}")
    return process


def profile(pid: int, seconds: float, out: Path) -> None:
    """py-spy: raw collapsed stacks (summarised below) and a speedscope file."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    for fmt, path in (("raw", out.with_suffix(".txt")), ("speedscope", out.with_suffix(".json"))):
        subprocess.run(
            [spy, "record", "--pid", str(pid), "--duration", str(int(seconds / 2)),
             "--rate", "200", "--nonblocking", "--format", fmt, "-o", str(path)],
            check=True, capture_output=True,
        )  # fmt: skip


#: Leaf frames of threads that are waiting, not working (py-spy counts some as active).
IDLE_LEAVES = (
    "_worker futures/thread.py",
    "Condition.wait threading.py",
    "EpollSelector.select selectors.py",
)


def summarize_profile(raw: Path, top: int = 25) -> str:
    """Self and inclusive shares of busy samples per function from py-spy's raw output
    (samples whose leaf is a waiting thread are left out)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [
            f.split(" (")[0] + " " + _short(f) for f in stack.split(";")[1:]
        ]  # not the thread
        if not frames or frames[-1] in IDLE_LEAVES:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    lines = [f"{raw.name}: {total} busy samples", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("inclusive:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    where = frame.partition(" (")[2].rstrip(")")
    path, _, _line = where.rpartition(":")
    parts = Path(path).parts
    return "/".join(parts[-2:]) if parts else where


def one_run(
    label: str, code: Path, agent: str, loop: str, args: argparse.Namespace
) -> tuple[Run, str]:
    port = args.port
    gateway = start_gateway(code, agent, port, loop)
    profile_s = args.profile_seconds if args.profile else 0.0
    seconds = args.warmup + args.window + profile_s + 2
    callers = subprocess.Popen(
        [sys.executable, "-m", "bench.load_callers", "--url", f"http://127.0.0.1:{port}",
         "--calls", str(args.calls), "--seconds", str(seconds), "--ramp", str(args.ramp)],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    summary = ""
    try:
        time.sleep(args.ramp + args.warmup)
        stats(port, "/bench/stalls")  # reset
        before = stats(port)
        time.sleep(args.window)
        after = stats(port)
        stalls = stats(port, "/bench/stalls")
        if args.profile:
            out = Path(args.profile) / f"{label}-{agent}-{loop}-{args.calls}".replace(" ", "")
            profile(int(after["pid"]), profile_s, out)
            summary = summarize_profile(out.with_suffix(".txt"))
        output, _ = callers.communicate(timeout=seconds + args.ramp + 60)
    finally:
        callers.kill()
        gateway.terminate()
        gateway.wait(10)
    result = json.loads(output.strip().splitlines()[-1])
    calls = [c for c in result["calls"] if "refused" not in c]
    run = Run(
        label=label,
        agent=agent,
        calls=int(after["calls"]),
        cpu_s=after["cpu_s"] - before["cpu_s"],
        window_s=after["at_s"] - before["at_s"],
        load_avg=os.getloadavg()[0],
        gap_intervals=sum(int(c["gaps"]) for c in calls),
        intervals=sum(int(c["intervals"]) for c in calls),
        voiced=sum(int(c["voiced"]) for c in calls),
        packets=sum(int(c["packets"]) for c in calls),
        refused=len(result["calls"]) - len(calls),
        max_gap_ms=max((c["max_gap_ms"] for c in calls), default=0.0),
        gateway_stall_ms=stalls["worst_ms"],
        callers_stall_ms=result["callers_worst_stall_ms"],
    )
    return run, summary


def table(runs: list[Run]) -> str:
    groups: dict[tuple[str, str], list[Run]] = collections.defaultdict(list)
    for run in runs:
        groups[(run.label, run.agent)].append(run)
    rows = [
        "| code | agent | calls | runs | CPU ms per call per 20 ms (median) | projected calls/core "
        "| gaps > 40 ms | max gap | worst loop stall (gateway / callers) | voiced share "
        "| load avg |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (label, agent), group in groups.items():
        ms = statistics.median(r.ms_per_call_frame for r in group)
        intervals = sum(r.intervals for r in group) or 1
        gaps = sum(r.gap_intervals for r in group)
        voiced = sum(r.voiced for r in group) / max(sum(r.packets for r in group), 1)
        rows.append(
            f"| {label} | {agent} | {group[0].calls} | {len(group)} | {ms:.3f} "
            f"| {FRAME_MS / ms:.0f} | {100 * gaps / intervals:.2f} % "
            f"| {max(r.max_gap_ms for r in group):.0f} ms "
            f"| {max(r.gateway_stall_ms for r in group):.0f} / "
            f"{max(r.callers_stall_ms for r in group):.0f} ms | {100 * voiced:.0f} % "
            f"| {statistics.median(r.load_avg for r in group):.1f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--agent", action="append", choices=["fake", "scripted"])
    parser.add_argument("--code", action="append", help="label=dir (default: this=.)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--ramp", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--profile", help="directory for py-spy profiles")
    parser.add_argument("--profile-seconds", type=float, default=20.0)
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--loop", action="append", choices=["asyncio", "uvloop"])
    parser.add_argument("--json", help="write every run here")
    args = parser.parse_args()
    codes = [c.split("=", 1) for c in (args.code or ["this=."])]
    loops = args.loop or ["asyncio"]
    runs: list[Run] = []
    summaries: list[str] = []
    for _ in range(args.repeat):
        for label, code in codes:
            for agent, loop in itertools.product(args.agent or ["fake"], loops):
                name = f"{label} ({loop})" if len(loops) > 1 else label
                run, summary = one_run(name, Path(code), agent, loop, args)
                print(
                    f"{name} {agent}: {run.ms_per_call_frame:.3f} ms/call/20 ms "
                    f"({run.calls} calls, load {run.load_avg:.1f})",
                    file=sys.stderr,
                    flush=True,
                )
                runs.append(run)
                if summary:
                    summaries.append(summary)
    print(table(runs))
    for summary in summaries:
        print("\n" + summary)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in runs], indent=1))


if __name__ == "__main__":
    main()
