"""`python -m gateway` / `adk-webrtc-gateway`: parse arguments, load `.env`, serve."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from aiohttp import web
from dotenv import load_dotenv

from gateway.config import ConfigError, Settings, load_settings


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
    parser.add_argument("--max-calls", type=int, help=fields["max_calls"].description)
    parser.add_argument("--ice-servers", help=fields["ice_servers"].description)
    parser.add_argument("--ice-addresses", help=fields["ice_addresses"].description)
    parser.add_argument("--log-level", help=fields["log_level"].description)
    parser.add_argument("--session-url", help=fields["session_url"].description)
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
    from gateway.adk.live_config import LiveConfigError
    from gateway.adk.sessions import SessionStoreError
    from gateway.app import add_adk_lifecycle, build_adk_connector, create_app

    try:
        connector = build_adk_connector(settings)
    except (LiveConfigError, SessionStoreError) as exc:
        sys.exit(f"adk-webrtc-gateway: {exc}")
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        sys.exit(f"adk-webrtc-gateway: cannot load agent {settings.agent!r}: {exc}")
    app = create_app(settings, connector)
    add_adk_lifecycle(app, connector)
    try:
        web.run_app(app, host=settings.host, port=settings.port, print=_announce(settings))
    except SessionStoreError as exc:  # raised by the start-up check of the store
        sys.exit(f"adk-webrtc-gateway: {exc}")


def _announce(settings: Settings) -> Callable[[str], None]:
    def announce(message: str) -> None:
        logging.getLogger("gateway").info(
            "serving on http://%s:%d (agent %s)", settings.host, settings.port, settings.agent
        )

    return announce
