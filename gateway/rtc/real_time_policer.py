"""Caller audio no faster than real time: a token bucket on arrival time, in seconds
of media.

A caller's RTP was passed to the agent at whatever pace it came: at 10x real time
the agent got ten seconds of audio per second (and paid for them). The bucket fills
at `rate` seconds of media per second of arrival time, up to `burst_s`; a packet
takes its duration out, or is dropped (counted by the owner) when the bucket holds
less. A caller at real time never sees a drop: a burst after a stalled event loop or
a queue in the network is covered by `burst_s`, and `rate` is a little over 1 so a
sender whose clock runs fast does not drain the bucket over a long call.

Durations come from the packet itself, not its RTP timestamp (which the caller can
set at will): Opus from its TOC byte (RFC 6716 section 3.1), G.711 and G.722 from the
payload size; anything else counts as one 20 ms frame. Standard library only.
"""

from __future__ import annotations

from gateway.audio.formats import PTIME_S

#: Media ahead of real time a caller may send at once before packets are dropped:
#: covers event-loop stalls (tens of ms measured) and a network queue releasing at once.
DEFAULT_BURST_S = 0.5
#: Media seconds per second the bucket refills: real time plus 2 % for a fast clock
#: (sound-card clocks are off by < 0.01 %; a 10-minute call at +2 % stays in budget).
DEFAULT_RATE = 1.02

#: Opus frame durations by TOC configuration (RFC 6716 table 2), in ms.
_SILK_MS = (10.0, 20.0, 40.0, 60.0)
_HYBRID_MS = (10.0, 20.0)
_CELT_MS = (2.5, 5.0, 10.0, 20.0)
#: An Opus packet holds at most 120 ms (RFC 6716 section 3.2.5).
_OPUS_MAX_MS = 120.0


def opus_packet_duration_s(payload: bytes) -> float:
    """The audio an Opus packet carries; 0 for one that carries none or is invalid
    (the decoder makes nothing of it either)."""
    if not payload:
        return 0.0
    toc = payload[0]
    config = toc >> 3
    if config < 12:
        frame_ms = _SILK_MS[config % 4]
    elif config < 16:
        frame_ms = _HYBRID_MS[config % 2]
    else:
        frame_ms = _CELT_MS[config % 4]
    code = toc & 0x3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    elif len(payload) < 2:
        return 0.0
    else:
        frames = payload[1] & 0x3F
    total_ms = frame_ms * frames
    return total_ms / 1000 if total_ms <= _OPUS_MAX_MS else 0.0


def packet_duration_s(codec_name: str, payload: bytes) -> float:
    """The audio one RTP payload of codec `codec_name` (e.g. "opus") carries."""
    name = codec_name.lower()
    if name == "opus":
        return opus_packet_duration_s(payload)
    if name in ("pcmu", "pcma", "g722"):  # 8000 bytes per second of audio
        return len(payload) / 8000
    return PTIME_S


class RealTimePolicer:
    """Admits media at most `rate` times real time, after a burst of `burst_s`."""

    def __init__(self, burst_s: float = DEFAULT_BURST_S, rate: float = DEFAULT_RATE) -> None:
        if burst_s <= 0 or rate <= 0:
            raise ValueError("burst_s and rate must be positive")
        self._burst_s = burst_s
        self._rate = rate
        self._tokens_s = burst_s
        self._last_s: float | None = None

    def admit(self, duration_s: float, now_s: float) -> bool:
        """Whether `duration_s` of media arriving at `now_s` fits; takes it if so."""
        if self._last_s is not None:
            elapsed = max(0.0, now_s - self._last_s)
            self._tokens_s = min(self._burst_s, self._tokens_s + elapsed * self._rate)
        self._last_s = now_s
        if duration_s > self._tokens_s:
            return False
        self._tokens_s -= duration_s
        return True
