"""Gateway settings: defaults, environment (`GATEWAY_*`, `.env`) and command line.

One pydantic model, a description on every field. Precedence: command line, then
environment, then defaults. Imports nothing from the media stack or ADK.
"""

from __future__ import annotations

import ipaddress
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

    # Issue 12 (safe to put on the internet): what a caller can make the gateway send
    # before its media connects. docs/protocol.md, "ICE policy", says why these values.
    ice_max_candidates: int = Field(
        16,
        ge=1,
        le=256,
        description="Remote ICE candidates per call, offered and trickled together; "
        "further ones are dropped (each costs ~6 STUN checks sent by the gateway).",
    )
    ice_allowed_networks: tuple[str, ...] = Field(
        (),
        description="CIDRs callers' candidates may point into besides public addresses "
        "(LAN deployments, e.g. `192.168.0.0/16`). Private, CGNAT and loopback ranges are "
        "otherwise refused unless one of `ice_addresses` is in them.",
    )
    ice_mdns_candidates: bool = Field(
        True,
        description="Resolve callers' mDNS host candidates (`<uuid>.local`, how browsers "
        "hide host addresses; useful when callers share a link with the gateway). Off: "
        "they are dropped and the gateway sends no multicast queries.",
    )
    max_pending_calls_per_source: int = Field(
        8,
        ge=1,
        description="Calls from one client address still connecting, per worker process; "
        "beyond it offers get 429 `too_many_pending` with Retry-After.",
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

    @field_validator("ice_servers", "ice_addresses", "ice_allowed_networks", mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("ice_allowed_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # ValueError names the bad one
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
