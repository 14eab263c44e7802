"""What a load test does: the options, checked once.

Imports nothing from the media stack.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gateway.rtc import ice


class LoadTestConfigError(ValueError):
    """An option is out of range or inconsistent; the message says which and why."""


@dataclass(frozen=True, slots=True)
class LoadTestConfig:
    url: str
    """The gateway's base URL; callers `POST {url}/calls` and read `{url}/stats`."""
    calls: int = 10
    """How many callers in all."""
    processes: int = 1
    """Worker processes the callers are spread over (1: this process, this event loop)."""
    rate: float = 5.0
    """New calls per second during the ramp."""
    duration_s: float = 30.0
    """How long each call is held once connected, seconds."""
    prompt_path: Path | None = None
    """The WAV (any format PyAV reads) each caller speaks; None: the shipped prompt."""
    pause_s: float = 1.0
    """Silence between the end of the agent's answer and the caller's next prompt."""
    barge_in_after_s: float | None = None
    """Speak again this long into each agent answer (barge-in); None: never."""
    reply_timeout_s: float = 5.0
    """A prompt with no agent audio this long after it ends counts as unanswered."""
    connect_timeout_s: float = 10.0
    """A call with no media this long after its offer counts as failed."""
    media_timeout_s: float = 5.0
    """A connected call with no RTP from the gateway this long has lost it (a killed
    process, a lost machine): it ends there, failed, reported with the time and gap.
    The gateway sends a packet every 20 ms, silence included."""
    energy_threshold: float = 200.0
    """RMS (s16) of a 20 ms frame above which the caller counts it as agent audio."""
    ice_addresses: tuple[str, ...] | None = None
    """Local addresses the callers' ICE may use; None: 127.0.0.1 when the gateway is
    on loopback, else every interface."""
    stats_interval_s: float = 1.0
    """How often the server's `GET /stats` is read (and progress printed)."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LoadTestConfigError(f"url must be http(s)://host[:port], got {self.url!r}")
        _at_least("calls", self.calls, 1)
        _at_least("processes", self.processes, 1)
        if self.processes > self.calls:
            raise LoadTestConfigError(
                f"processes ({self.processes}) must not exceed calls ({self.calls})"
            )
        _positive("rate", self.rate)
        _positive("duration", self.duration_s)
        _positive("reply timeout", self.reply_timeout_s)
        _positive("connect timeout", self.connect_timeout_s)
        _positive("media timeout", self.media_timeout_s)
        _positive("stats interval", self.stats_interval_s)
        _positive("energy threshold", self.energy_threshold)
        if self.pause_s < 0:
            raise LoadTestConfigError(f"pause must be >= 0 s, got {self.pause_s}")
        if self.barge_in_after_s is not None:
            _positive("barge-in-after", self.barge_in_after_s)
        if self.prompt_path is not None and not Path(self.prompt_path).is_file():
            raise LoadTestConfigError(f"prompt file not found: {self.prompt_path}")
        if self.ice_addresses:
            try:
                ice.host_addresses(self.ice_addresses, serving_loopback_only=False)
            except ice.UnknownInterfaceError as exc:
                raise LoadTestConfigError(str(exc).removeprefix("ice_addresses: ")) from None

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    def effective_ice_addresses(self) -> tuple[str, ...]:
        """The addresses ICE may use (empty: every interface); interface names are
        resolved to their addresses."""
        if self.ice_addresses is not None:
            return ice.host_addresses(self.ice_addresses, serving_loopback_only=False)
        host = urlsplit(self.url).hostname or ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        return ("127.0.0.1",) if loopback else ()


def _at_least(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LoadTestConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise LoadTestConfigError(f"{name} must be > 0, got {value!r}")
