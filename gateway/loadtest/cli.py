"""`python -m gateway.loadtest` / `adk-webrtc-gateway-loadtest`: options in, report out.

Progress goes to stderr once per interval, the summary table to stdout, the full
report to `--report` as JSON. Exit status: 0 when no call failed, 1 when some did
(refused calls are counted, not failures), 2 for bad options.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.loadtest.config import LoadTestConfig, LoadTestConfigError
from gateway.loadtest.prompt import PromptError
from gateway.loadtest.report import format_table
from gateway.loadtest.runner import LoadTestError, failed_calls, run_load_test

PROG = "adk-webrtc-gateway-loadtest"


def build_parser() -> argparse.ArgumentParser:
    defaults = LoadTestConfig(url="http://127.0.0.1")
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Headless WebRTC callers against a gateway: how many calls it carries, "
        "how fast it answers, how clean its audio stays. See docs/loadtest.md.",
    )
    add = parser.add_argument
    add("url", help="the gateway's base URL, e.g. http://127.0.0.1:8080")
    add("-n", "--calls", type=int, default=defaults.calls, help="callers in all (%(default)s)")
    add("--processes", type=int, default=defaults.processes,
        help="worker processes to spread callers over (%(default)s)")  # fmt: skip
    add("--rate", type=float, default=defaults.rate,
        help="new calls per second while ramping up (%(default)s)")  # fmt: skip
    add("--duration", type=float, default=defaults.duration_s,
        help="seconds each call is held once connected (%(default)s)")  # fmt: skip
    add("--prompt", type=Path, help="WAV file each caller speaks (default: shipped prompt)")
    add("--pause", type=float, default=defaults.pause_s,
        help="seconds of silence after each answer before the next prompt "
        "(%(default)s)")  # fmt: skip
    add("--barge-in-after", type=float, metavar="S",
        help="speak again S seconds into each agent answer (barge-in)")  # fmt: skip
    add("--reply-timeout", type=float, default=defaults.reply_timeout_s,
        help="seconds without agent audio after a prompt before it counts as unanswered "
        "(%(default)s)")  # fmt: skip
    add("--connect-timeout", type=float, default=defaults.connect_timeout_s,
        help="seconds from offer to first media before a call counts as failed "
        "(%(default)s)")  # fmt: skip
    add("--media-timeout", type=float, default=defaults.media_timeout_s,
        help="seconds without any RTP from the gateway before a connected call counts "
        "as lost (%(default)s)")  # fmt: skip
    add("--energy-threshold", type=float, default=defaults.energy_threshold,
        help="RMS of a 20 ms frame above which it is agent audio (%(default)s)")  # fmt: skip
    add("--ice-addresses",
        help="local addresses or interface names ICE may use, comma-separated "
        "(default: 127.0.0.1 for a loopback gateway, else all interfaces)")  # fmt: skip
    add("--report", type=Path, help="write the full report here as JSON")
    add("--quiet", action="store_true", help="no progress lines")
    return parser


def config_from_args(args: argparse.Namespace) -> LoadTestConfig:
    addresses = args.ice_addresses
    return LoadTestConfig(
        url=args.url,
        calls=args.calls,
        processes=args.processes,
        rate=args.rate,
        duration_s=args.duration,
        prompt_path=args.prompt,
        pause_s=args.pause,
        barge_in_after_s=args.barge_in_after,
        reply_timeout_s=args.reply_timeout,
        connect_timeout_s=args.connect_timeout,
        media_timeout_s=args.media_timeout,
        energy_threshold=args.energy_threshold,
        ice_addresses=None
        if addresses is None
        else tuple(a.strip() for a in addresses.split(",") if a.strip()),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except LoadTestConfigError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        report = asyncio.run(run_load_test(config, None if args.quiet else progress))
    except (PromptError, LoadTestError) as exc:
        sys.exit(f"{PROG}: {exc}")
    except KeyboardInterrupt:
        sys.exit(f"{PROG}: interrupted")
    print(format_table(report))
    if args.report is not None:
        args.report.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    sys.exit(1 if failed_calls(report) else 0)
