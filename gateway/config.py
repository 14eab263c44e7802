"""Gateway settings: defaults, environment (`GATEWAY_*`, `.env`) and command line.

One pydantic model, a description on every field. Precedence: command line, then
environment, then defaults. Imports nothing from the media stack or ADK.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

#: Secrets libraries read from the environment (google-genai: the API key).
SECRET_ENVIRONMENT = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
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
        description="Local addresses or interface names ICE may gather host candidates on "
        "(e.g. `127.0.0.1`, `eth0`); empty means every interface, with loopback too when "
        "the gateway serves on loopback only.",
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
    # Issue 14 (conversations that outlive an instance): gateway/adk/retention.py and
    # docs/sessions.md.
    session_retention_days: float = Field(
        30.0,
        ge=0,
        description="Conversations not touched for this many days are deleted from the "
        "session store (checked every 10 minutes by each process, in bounded batches); "
        "0 keeps them forever.",
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

    # Issue 12 (safe on the internet): authentication and limits on use. Secrets are
    # kept out of reprs; never log a Settings object's fields one by one either.
    api_keys: tuple[str, ...] = Field(
        (),
        repr=False,
        description="Static bearer keys for server-side callers, comma-separated; also "
        "admin keys (`/stats`). At least 16 characters each.",
    )
    jwt_secret: str | None = Field(
        None,
        repr=False,
        description="HS256 secret that call tokens are signed with (`python -m gateway "
        "token` mints them); at least 32 characters.",
    )
    jwt_public_key: Path | None = Field(
        None,
        description="PEM public key (RS256/ES256) that call tokens are verified with, for "
        "tokens an application's backend signs with its private key.",
    )
    no_auth: bool = Field(
        False,
        description="Serve anyone who can reach the port, on any address (explicit "
        "opt-out; without any auth setting only loopback is served).",
    )
    allowed_origins: tuple[str, ...] = Field(
        (),
        description="Browser origins allowed to call and to open WebSockets, "
        "comma-separated (e.g. `https://app.example`); default: the gateway's own origin.",
    )
    client_token_url: str | None = Field(
        None,
        description="Where the served browser client gets its call token (an endpoint of "
        'your app answering JSON `{"token": ...}`); see docs/auth.md.',
    )
    offers_per_minute: int = Field(
        30, ge=1, description="Call and WebSocket set-ups per source address per minute."
    )
    user_offers_per_minute: int = Field(
        20, ge=1, description="Call and WebSocket set-ups per authenticated user per minute."
    )
    auth_failures_per_minute: int = Field(
        10, ge=1, description="Failed authentications per source address per minute."
    )
    calls_per_user: int = Field(
        3, ge=1, description="Live calls and WebSocket sessions at once per user."
    )
    max_call_s: float = Field(
        3600.0, gt=0, description="A call (or WebSocket session) is ended after this long."
    )
    call_idle_s: float = Field(
        60.0,
        gt=0,
        description="A call whose caller sends no media and no message for this long is "
        "ended (a caller gone without hanging up).",
    )
    redis_url: str | None = Field(
        None,
        description="Redis (`redis://host:6379/0`) holding what every worker and instance "
        "shares: the usage limits (docs/auth.md); without it each process counts alone.",
    )
    # Issue 14 (many machines): instances that know each other through Redis.
    # docs/deploy.md section 7 walks an operator through them.
    public_url: str | None = Field(
        None,
        description="How other instances and clients reach this instance "
        "(`https://gw-3.example`, scheme://host[:port], no path); default: from host and "
        "port (https with certfile; the machine's name when host is 0.0.0.0 or ::).",
    )
    cross_instance: Literal["proxy", "redirect"] = Field(
        "proxy",
        description="A PATCH or DELETE for a call another instance owns (with redis_url): "
        "`proxy` forwards it to the owner (clients behind one hostname), `redirect` "
        "answers 307 to the owner's public URL (WHIP's own mechanism, RFC 9725 §4.5).",
    )
    fleet_max_calls: int | None = Field(
        None,
        ge=1,
        description="Live calls at once over every instance registered in Redis "
        "(needs redis_url); beyond it offers get 503 + Retry-After. Approximate: the "
        "other instances' counts are as fresh as their last heartbeat (2 s).",
    )

    text_turns_per_s: float = Field(
        2.0, gt=0, description="Typed turns per second a call may send to the agent."
    )

    @model_validator(mode="after")
    def _auth_or_loopback(self) -> Settings:
        """Without authentication the gateway serves loopback only (secure by default)."""
        if self.authenticated or self.no_auth or _is_loopback_host(self.host):
            return self
        raise ValueError(
            f"refusing to serve {self.host} without authentication: set --api-keys, "
            "--jwt-secret or --jwt-public-key (docs/auth.md), or --no-auth to serve anyone "
            "who can reach the port"
        )

    @property
    def authenticated(self) -> bool:
        """Whether callers must present a credential."""
        return bool(self.api_keys or self.jwt_secret or self.jwt_public_key)

    @property
    def serves_loopback_only(self) -> bool:
        """Whether only this host can reach the HTTP server."""
        return _is_loopback_host(self.host)

    def secret_values(self, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
        """Every secret the process holds, for the log redactor: ours, and the
        Gemini/Google keys google-genai reads from the environment."""
        env = os.environ if environ is None else environ
        from_env = (env.get(name, "") for name in SECRET_ENVIRONMENT)
        # Passwords inside store URLs (postgresql://user:pw@..., redis://:pw@...).
        in_urls = (urlsplit(u).password or "" for u in (self.session_url, self.redis_url or ""))
        # TURN passwords in static ICE server URLs (turn:user:pass@host).
        in_ice = (
            url.partition(":")[2].rpartition("@")[0].partition(":")[2] for url in self.ice_servers
        )
        secrets = (*self.api_keys, self.jwt_secret or "", self.turn_secret or "")
        return tuple(v for v in (*secrets, *from_env, *in_urls, *in_ice) if v)

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

    # Issue 13 (reachable from any network): TURN, NAT 1:1, TLS, proxies in front.
    # docs/deploy.md walks an operator through them.
    turn_urls: tuple[str, ...] = Field(
        (),
        description="TURN URLs (`turn:host:3478`, `turns:host:5349?transport=tcp`) whose "
        "credentials the gateway mints per call from `turn_secret` (coturn "
        "`use-auth-secret`); handed to callers and used by the gateway itself.",
    )
    turn_secret: str | None = Field(
        None,
        repr=False,
        description="The shared secret of the TURN relay (coturn `static-auth-secret`).",
    )
    turn_ttl_s: float = Field(
        3600.0,
        gt=0,
        le=86400,
        description="How long minted TURN credentials stay valid (a call that outlives "
        "them keeps its allocation; refreshes are authenticated by the same credential).",
    )
    public_ip: str | None = Field(
        None,
        description="This host's public address behind a 1:1 NAT (a cloud VM's elastic "
        "IP): announced in the gateway's host candidates instead of the local address.",
    )
    certfile: Path | None = Field(
        None, description="PEM certificate chain: serve HTTPS and WSS directly (with keyfile)."
    )
    keyfile: Path | None = Field(None, description="PEM private key of certfile.")
    trusted_proxies: tuple[str, ...] = Field(
        (),
        description="CIDRs of reverse proxies in front of the gateway whose "
        "X-Forwarded-For/-Proto are believed (client address for limits and logs); "
        "empty: the peer address is the client.",
    )

    # Issue 14 (many machines): readiness and drain. docs/operations.md.
    drain_timeout: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="Seconds a draining gateway (SIGTERM, POST /admin/drain) gives its "
        "callers to end or move their calls before it hangs up the rest and exits.",
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

    @field_validator("api_keys")
    @classmethod
    def _long_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(len(key) < 16 for key in value):
            raise ValueError("each API key needs at least 16 characters")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _long_secret(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError("the JWT secret needs at least 32 characters (RFC 7518 §3.2)")
        return value

    @field_validator(
        "ice_servers",
        "ice_addresses",
        "api_keys",
        "allowed_origins",
        "ice_allowed_networks",
        "turn_urls",
        "trusted_proxies",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # An origin is scheme://host[:port], as a browser sends it (RFC 6454 §6.2).
        origins = tuple(origin.rstrip("/") for origin in value)
        for origin in origins:
            if not re.fullmatch(r"https?://[^/?#\s*]+", origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example")
        return origins

    @field_validator("ice_allowed_networks", "trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # ValueError names the bad one
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("a Redis URL starts redis://, rediss:// or unix://")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = value.rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
            raise ValueError(f"{value!r} is not a base URL like https://gw-3.example")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"{value!r} is not a base URL like https://gw-3.example")
        return url

    @property
    def advertised_url(self) -> str:
        """`public_url`, or the URL this instance serves at (scheme from TLS, host,
        port): what other instances and redirected clients use to reach it."""
        if self.public_url is not None:
            return self.public_url
        scheme = "https" if self.certfile is not None else "http"
        host = self.host
        if host in ("", "0.0.0.0", "::"):  # every address: name the machine
            host = socket.getfqdn()
        elif ":" in host:  # an IPv6 literal (RFC 3986 §3.2.2)
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    @field_validator("public_ip")
    @classmethod
    def _an_address(cls, value: str | None) -> str | None:
        return None if value is None else str(ipaddress.ip_address(value))

    @field_validator("turn_urls")
    @classmethod
    def _turn_scheme(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not re.fullmatch(r"turns?:[^@\s]+", url):
                raise ValueError(f"{url!r} is not a TURN URL like turn:host:3478 (no credentials)")
        return value

    @model_validator(mode="after")
    def _pairs(self) -> Settings:
        if self.turn_urls and not self.turn_secret:
            raise ValueError("turn_urls needs turn_secret (the relay's static-auth-secret)")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile go together")
        if self.fleet_max_calls is not None and self.redis_url is None:
            raise ValueError("fleet_max_calls needs redis_url (where the instances count)")
        return self

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return level


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        raise ConfigError(f"invalid settings: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    """Each error as `field: reason` (or just the reason, for a rule over fields)."""
    said = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        reason = str(err["msg"]).removeprefix("Value error, ")
        said.append(f"{where}: {reason}" if where else reason)
    return "; ".join(said)
