"""Caller audio under loss: stock aiortc vs our receive path, side by side in one run.

For each loss rate (0 %, 5 %, 20 %, random, seeded) with 40 +/- 20 ms jitter on the
caller's link, the same seeded link carries one call into aiortc's stock receiver
track and one into `gateway.rtc.receive_path`. Two real aiortc peers on loopback, the
impairment from the userspace relay in `tests/support/netem/relay.py` (no kernel netem here).

Reported per loss rate and path: packets the receiver got and frames that reached the
consumer (as % of packets sent), the shortfall between them in percentage points, the
longest loss burst and the longest gap on the media timeline (pts step between
consecutive frames; 20 ms means nothing missing), the wall-clock gap between frames,
and the delay from the relay forwarding a packet to its frame leaving `recv()`.

    python -m bench.loss                      # 10 s per call, 3 seeds: ~3 min
    python -m bench.loss --seconds 3 --seeds 1 --json var/loss.json
    python -m bench.loss --write-docs docs/benchmarks.md   # its section + loss_notes.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gateway.rtc import ice
from tests.support.netem.loss_call import FRAME_MS, LossRun, run_loss_call
from tests.support.netem.relay import Impairment

LOSS_RATES = (0.0, 0.05, 0.20)
DELAY_S, JITTER_S = 0.04, 0.02
SECTION = "## Audio under loss"
#: The written conclusions, kept under the regenerated table.
NOTES = Path(__file__).with_name("loss_notes.md")


@dataclass(frozen=True, slots=True)
class Row:
    """One loss rate and path, over all seeds."""

    loss: float
    path: str
    calls: int
    packets_sent: int
    received_pct: float
    delivered_pct: float
    shortfall_pp: float
    max_burst_ms: float
    max_media_gap_ms: float
    wall_gap_p99_ms: float
    wall_gap_max_ms: float
    delay_median_ms: float
    delay_p99_ms: float


def aggregate(loss: float, path: str, runs: list[LossRun]) -> Row:
    sent = sum(r.packets_sent for r in runs)
    received = sum(r.packets_received for r in runs)
    delivered = sum(r.frames_delivered for r in runs)
    gaps = np.array([g for r in runs for g in r.wall_gaps_ms] or [0.0])
    delays = np.array([d for r in runs for d in r.path_delays_ms] or [np.nan])
    return Row(
        loss=loss,
        path=path,
        calls=len(runs),
        packets_sent=sent,
        received_pct=100.0 * received / sent,
        delivered_pct=100.0 * delivered / sent,
        shortfall_pp=100.0 * (received - delivered) / sent,
        max_burst_ms=max(r.max_burst_packets for r in runs) * FRAME_MS,
        max_media_gap_ms=max(r.max_media_step_ms for r in runs),
        wall_gap_p99_ms=float(np.percentile(gaps, 99)),
        wall_gap_max_ms=float(gaps.max()),
        delay_median_ms=float(np.median(delays)),
        delay_p99_ms=float(np.percentile(delays, 99)),
    )


async def measure(seconds: float, seeds: int) -> list[Row]:
    frames = round(seconds * 1000 / FRAME_MS)
    rows = []
    for loss in LOSS_RATES:
        by_path: dict[str, list[LossRun]] = {"stock": [], "ours": []}
        for seed in range(1, seeds + 1):
            link = Impairment(loss=loss, delay_s=DELAY_S, jitter_s=JITTER_S, seed=seed)
            for path in by_path:
                run = await run_loss_call(link, ours=path == "ours", frames=frames)
                by_path[path].append(run)
                print(
                    f"loss {loss:4.0%} seed {seed} {path:5}: received "
                    f"{run.received_ratio:6.1%} delivered {run.delivered_ratio:6.1%} "
                    f"max media gap {run.max_media_step_ms:4.0f} ms",
                    file=sys.stderr,
                )
        rows += [aggregate(loss, path, runs) for path, runs in by_path.items()]
    return rows


def markdown(rows: list[Row], seconds: float, seeds: int) -> str:
    lines = [
        SECTION,
        "",
        f"`python -m bench.loss --seconds {seconds:g} --seeds {seeds}`: per loss rate, "
        f"{seeds} call(s) of {seconds:g} s into each path over the same seeded link "
        "(random loss, 40 +/- 20 ms jitter on the caller's link, userspace relay on "
        "loopback). Percentages are of packets sent; *shortfall* is received minus "
        "delivered; *media gap* is the largest `pts` step between consecutive frames "
        "(20 ms = nothing missing); *delay* is relay-forwarded to frame out of `recv()`.",
        "",
        "| loss | path | packets sent | received | delivered | shortfall | "
        "max burst | max media gap | wall gap p99 / max | delay median / p99 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.loss:.0%} | {r.path} | {r.packets_sent} | {r.received_pct:.1f} % | "
            f"{r.delivered_pct:.1f} % | {r.shortfall_pp:.1f} pp | {r.max_burst_ms:.0f} ms | "
            f"{r.max_media_gap_ms:.0f} ms | {r.wall_gap_p99_ms:.0f} / {r.wall_gap_max_ms:.0f} ms"
            f" | {r.delay_median_ms:.1f} / {r.delay_p99_ms:.0f} ms |"
        )
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str, notes: str) -> None:
    """Replace (or add) our section of the shared benchmarks file, keeping the rest."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    body = section + ("\n" + notes if notes else "")
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: body + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per call")
    parser.add_argument("--seeds", type=int, default=3, help="calls per loss rate and path")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--write-docs", type=Path, help="replace our section in this file")
    args = parser.parse_args(argv)
    ice.restrict_host_addresses(["127.0.0.1"])  # test traffic stays on loopback
    rows = asyncio.run(measure(args.seconds, args.seeds))
    table = markdown(rows, args.seconds, args.seeds)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    if args.write_docs:
        write_section(args.write_docs, table, NOTES.read_text() if NOTES.exists() else "")


if __name__ == "__main__":
    main()
