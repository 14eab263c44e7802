"""How the call's audio travelled, from aiortc's RTP and RTCP statistics.

`link_quality(pc)` reads `pc.getStats()` once (at hang-up): the uplink's loss and
jitter as our receiver counted them (RTP sequence numbers and arrival times), the
downlink's as the caller reported them in RTCP receiver reports (RFC 3550 §6.4.1),
and the round-trip time aiortc derives from those reports' LSR/DLSR fields. aiortc
gives jitter in RTP timestamp units (RFC 3550 §6.4.1; its `RTCInboundRtpStreamStats`
and `RTCRemoteInboundRtpStreamStats` pass the raw value), so it is divided by Opus'
48 kHz clock (RFC 7587 §4.1). A value nothing reported is None (a call too short for
an RTCP report, say). Knows aiortc's stats types only.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCPeerConnection
from aiortc.stats import RTCInboundRtpStreamStats, RTCRemoteInboundRtpStreamStats

#: Opus' RTP clock (RFC 7587 §4.1), the only codec the gateway negotiates.
RTP_CLOCK_HZ = 48_000


@dataclass(frozen=True, slots=True)
class LinkQuality:
    uplink_loss: float | None
    """Fraction of the caller's packets that never arrived."""
    uplink_jitter_s: float | None
    downlink_loss: float | None
    """Fraction of our packets the caller reported lost."""
    downlink_jitter_s: float | None
    rtt_s: float | None


async def link_quality(pc: RTCPeerConnection) -> LinkQuality:
    uplink_loss = uplink_jitter = downlink_loss = downlink_jitter = rtt = None
    for stats in (await pc.getStats()).values():
        if isinstance(stats, RTCInboundRtpStreamStats) and stats.kind == "audio":
            expected = stats.packetsReceived + max(stats.packetsLost, 0)
            if expected:
                uplink_loss = max(stats.packetsLost, 0) / expected
                uplink_jitter = stats.jitter / RTP_CLOCK_HZ
        elif isinstance(stats, RTCRemoteInboundRtpStreamStats) and stats.kind == "audio":
            expected = stats.packetsReceived + max(stats.packetsLost, 0)
            if expected:
                downlink_loss = max(stats.packetsLost, 0) / expected
                downlink_jitter = stats.jitter / RTP_CLOCK_HZ
            rtt = stats.roundTripTime
    return LinkQuality(uplink_loss, uplink_jitter, downlink_loss, downlink_jitter, rtt)
