"""`python -m gateway` / `adk-webrtc-gateway`: parse arguments, load `.env`, serve.

With `workers` 1 the gateway is this one process; with more, this process supervises
that many worker processes (`gateway.cluster.supervisor`) and serves nothing itself,
so it imports neither aiohttp nor aiortc nor ADK: the serving code is imported only
where it runs.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from collections.abc import Sequence

from dotenv import load_dotenv

from gateway.config import ConfigError, Settings, load_settings
from gateway.errors import StartupError
from gateway.logs import configure_logging
from gateway.tls import server_context


def parse_args(argv: Sequence[str] | None) -> dict[str, object]:
    """One `--flag` per setting (`--max-calls` for `max_calls`), as `GATEWAY_<NAME>` in
    the environment; values are checked by `Settings`."""
    parser = argparse.ArgumentParser(
        prog="adk-webrtc-gateway",
        description="WebRTC media gateway for Google ADK live agents. Every option can "
        "also be set in the environment as GATEWAY_<NAME> (or in a .env file). "
        "`adk-webrtc-gateway token --help` mints call tokens.",
    )
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            parser.add_argument(flag, action="store_true", default=None, help=field.description)
        else:
            parser.add_argument(flag, help=field.description)
    args = vars(parser.parse_args(argv))
    return {k: v for k, v in args.items() if v is not None}


def main(argv: Sequence[str] | None = None) -> None:
    load_dotenv(override=False)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["token"]:
        from gateway.auth.token_command import token_command

        sys.exit(token_command(argv[1:]))
    overrides = parse_args(argv)
    try:
        settings = load_settings(overrides)
    except ConfigError as exc:
        sys.exit(f"adk-webrtc-gateway: {exc}")
    configure_logging(
        settings.log_level,
        "%(asctime)s %(levelname)s %(name)s: %(message)s",
        settings.secret_values(),
    )
    try:
        if settings.certfile is not None and settings.keyfile is not None:
            # Before the agent loads: a certificate that cannot serve fails in a moment.
            # Each serving process then loads its own context (`http_server.tls_context`).
            server_context(settings.certfile, settings.keyfile)
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
    from gateway.ops.drain import DRAIN_KEY

    connector = load_adk_connector(settings)
    app = create_app(settings, connector)
    add_adk_lifecycle(app, connector, session_retention_days=settings.session_retention_days)
    drain = app[DRAIN_KEY]  # POST /admin/drain: the same SIGTERM an operator sends
    drain.request_stop = functools.partial(os.kill, os.getpid(), signal.SIGTERM)
    drain.cut_short_signals = (signal.SIGTERM, signal.SIGINT)
    try:
        serve(app, settings)
    except SessionStoreError as exc:  # raised by the start-up check of the store
        raise StartupError(str(exc)) from None
