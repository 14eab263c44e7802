"""`python -m gateway` / `adk-webrtc-gateway`: parse arguments, load `.env`, serve.

With `workers` 1 the gateway is this one process; with more, this process supervises
that many worker processes (`gateway.cluster.supervisor`) and serves nothing itself,
so it imports neither aiohttp nor aiortc nor ADK: the serving code is imported only
where it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from dotenv import load_dotenv

from gateway.config import ConfigError, Settings, load_settings
from gateway.errors import StartupError


def parse_args(argv: Sequence[str] | None) -> dict[str, object]:
    fields = Settings.model_fields
    parser = argparse.ArgumentParser(
        prog="adk-webrtc-gateway",
        description="WebRTC media gateway for Google ADK live agents. Every option can "
        "also be set in the environment as GATEWAY_<NAME> (or in a .env file).",
    )
    parser.add_argument("--host", help=fields["host"].description)
    parser.add_argument("--port", type=int, help=fields["port"].description)
    parser.add_argument("--agent", help=fields["agent"].description)
    parser.add_argument("--workers", type=int, help=fields["workers"].description)
    parser.add_argument("--max-calls", type=int, help=fields["max_calls"].description)
    parser.add_argument("--ice-servers", help=fields["ice_servers"].description)
    parser.add_argument("--ice-addresses", help=fields["ice_addresses"].description)
    parser.add_argument("--log-level", help=fields["log_level"].description)
    parser.add_argument("--session-url", help=fields["session_url"].description)
    # Slow clients and connection caps (gateway/http_server.py).
    for flag, kind in [
        ("--header-timeout-s", float),
        ("--body-timeout-s", float),
        ("--idle-timeout-s", float),
        ("--max-connections", int),
        ("--max-idle-connections", int),
    ]:
        field = fields[flag[2:].replace("-", "_")]
        parser.add_argument(flag, type=kind, help=field.description)
    args = vars(parser.parse_args(argv))
    return {k: v for k, v in args.items() if v is not None}


def main(argv: Sequence[str] | None = None) -> None:
    load_dotenv(override=False)
    overrides = parse_args(argv)
    try:
        settings = load_settings(overrides)
    except ConfigError as exc:
        sys.exit(f"adk-webrtc-gateway: {exc}")
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if settings.workers == 1:
            _serve_in_this_process(settings)
        else:
            from gateway.cluster.supervisor import run_workers

            run_workers(settings)
    except StartupError as exc:
        sys.exit(f"adk-webrtc-gateway: {exc}")


def _serve_in_this_process(settings: Settings) -> None:
    from gateway.adk.sessions import SessionStoreError
    from gateway.app import add_adk_lifecycle, create_app, load_adk_connector
    from gateway.http_server import serve

    connector = load_adk_connector(settings)
    app = create_app(settings, connector)
    add_adk_lifecycle(app, connector)
    try:
        serve(app, settings)
    except SessionStoreError as exc:  # raised by the start-up check of the store
        raise StartupError(str(exc)) from None
