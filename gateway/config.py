"""Gateway settings: defaults, environment (`GATEWAY_*`, `.env`) and command line.

One pydantic model, a description on every field. Precedence: command line, then
environment, then defaults. Imports nothing from the media stack or ADK.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "GATEWAY_"
#: Live calls one core carries with clean audio: the capacity measured with the
#: scripted agent in docs/benchmarks.md. `max_calls` defaults to workers x this.
CALLS_PER_CORE = 60


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class ConfigError(Exception):
    """Settings that cannot work; the message says which and why."""


class Settings(BaseModel):
    """Everything an operator can set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field("127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(8080, ge=0, le=65535, description="HTTP port (0 picks a free one).")
    agent: str = Field(
        "gateway.agents.default:root_agent",
        description="The ADK agent to serve, as `module:attribute`.",
    )
    app_name: str = Field("adk-webrtc-gateway", description="ADK app name for sessions.")
    workers: int = Field(
        default_factory=usable_cores,
        ge=1,
        le=1024,
        description="Worker processes, each with its own event loop (default: one per "
        "usable core); 1 serves everything from this one process.",
    )
    max_calls: int = Field(
        CALLS_PER_CORE,
        ge=1,
        description="Live calls accepted at once over all workers; beyond it offers get "
        f"503 + Retry-After (default: workers x {CALLS_PER_CORE}, the measured capacity).",
    )
    max_offer_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest SDP offer or JSON body accepted (413 above)."
    )
    ice_servers: tuple[str, ...] = Field(
        (),
        description="STUN/TURN URLs (`stun:host:port`, `turn:user:pass@host:port`); "
        "none by default, so a gateway with no network never reaches for one.",
    )
    ice_addresses: tuple[str, ...] = Field(
        (),
        description="Local addresses ICE may gather host candidates on "
        "(e.g. `127.0.0.1` for loopback-only); empty means every interface.",
    )
    call_setup_timeout_s: float = Field(
        30.0, gt=0, description="A call whose media never connects is ended after this."
    )
    log_level: str = Field("INFO", description="Python logging level.")
    # Issue 4 (Gemini Live in production); the Gemini settings themselves are
    # `GATEWAY_GEMINI_*`, see gateway/adk/live_config.py and docs/gemini-live.md.
    session_url: str = Field(
        "sqlite+aiosqlite:///var/sessions.db",
        description="Where conversations persist: sqlite+aiosqlite:///path (default, "
        "embedded), postgresql+asyncpg://user:pass@host/db (several instances) or memory://.",
    )
    # Issue 12 (safe on the internet): slow clients and connection caps, enforced by
    # gateway/http_server.py; docs/protocol.md "Timeouts and connection limits".
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="A request's line and headers must arrive within this of the connection "
        "opening (or, on a keep-alive connection, of the request's first byte).",
    )
    body_timeout_s: float = Field(
        15.0,
        gt=0,
        le=300,
        description="A request's body must arrive within this of its headers (408 after).",
    )
    idle_timeout_s: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="A keep-alive connection with no request is closed after this.",
    )
    max_connections: int | None = Field(
        None,
        ge=1,
        description="Open HTTP connections per process (WebSockets included); past it a new "
        "connection is answered 503 and closed (default: what RLIMIT_NOFILE leaves after a "
        "reserve for calls, logged at start-up).",
    )
    max_idle_connections: int | None = Field(
        None,
        ge=1,
        description="Connections per process that have not sent a complete request (new, "
        "between requests, or slow); past it the longest idle one is closed "
        "(default: half of max_connections).",
    )

    @model_validator(mode="before")
    @classmethod
    def _capacity_from_workers(cls, data: Any) -> Any:
        """No explicit `max_calls`: as many as the workers' cores carry."""
        if not isinstance(data, dict) or data.get("max_calls") is not None:
            return data
        try:
            workers = int(data.get("workers") or usable_cores())
        except (TypeError, ValueError):
            return data  # the `workers` field reports the mistake
        return {**data, "max_calls": max(workers, 1) * CALLS_PER_CORE}

    @field_validator("ice_servers", "ice_addresses", mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return level


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build settings from `environ` (default: the process's) and explicit overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in env:
            values[name] = env[key]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
