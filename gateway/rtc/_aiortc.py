"""Every place the gateway reaches into aiortc's private internals, and nowhere else.

aiortc has no public hook for what we need here; each touch below says why it is
needed and what it relies on. `shape_problems()` lists what no longer matches in the
installed aiortc; `tests/test_seams.py` fails on any, so an aiortc upgrade that moves
one of these is caught by the test run, not by a caller.

1. The receiver's jitter buffer (`RTCRtpReceiver.__jitter_buffer`, name-mangled): the
   one place between "RTP packet accepted" (after SRTP, RTCP and SSRC checks) and
   "frame decoded". `tap_packets` swaps it, per receiver, for a tap handing every
   packet to a sink (our loss-tolerant receive path, the load tester's listener);
   `observe_packets` wraps it to time packets (benchmarks). aiortc uses it only as
   `add(packet) -> (pli_flag, frame)`.
2. The ICE transport's aioice connection (`RTCIceTransport._connection`), to stop an
   aioice task that outlives `close()` (see `rtc/_aioice.py`).
3. The receiver's packet handler (`RTCRtpReceiver._handle_rtp_packet`), for
   benchmarks that feed packets without a network (`inject_rtp_packet`).

Imports aiortc only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtp import RtpPacket

#: The receiver's private jitter buffer, name-mangled (`self.__jitter_buffer`).
JITTER_BUFFER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_ICE_CONNECTION_ATTR = "_connection"


class ReceivePathUnavailable(RuntimeError):
    """The installed aiortc no longer has the receiver seam `tap_packets` relies on."""


class _PacketTap:
    """Stands in for the receiver's jitter buffer: forwards packets, returns no frame
    (so the receiver's own decoder thread idles)."""

    def __init__(self, sink: Callable[[RtpPacket], None]) -> None:
        self.sink = sink

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self.sink(packet)
        return False, None


def ensure_tappable(receiver: RTCRtpReceiver) -> None:
    """Raise `ReceivePathUnavailable` if aiortc changed, `ValueError` if the receiver
    is tapped already: what `tap_packets` would raise, checked before any set-up."""
    current = getattr(receiver, JITTER_BUFFER_ATTR, None)
    if isinstance(current, _PacketTap):
        raise ValueError("the receiver is tapped already")
    if not isinstance(current, JitterBuffer) or not callable(getattr(current, "add", None)):
        raise ReceivePathUnavailable(
            f"aiortc's RTCRtpReceiver has no {JITTER_BUFFER_ATTR} JitterBuffer any more"
        )


def tap_packets(receiver: RTCRtpReceiver, sink: Callable[[RtpPacket], None]) -> None:
    """Hand every RTP packet the receiver accepts to `sink`, instead of aiortc's jitter
    buffer and decoder (see `ensure_tappable` for what it raises)."""
    ensure_tappable(receiver)
    setattr(receiver, JITTER_BUFFER_ATTR, _PacketTap(sink))


class _ObservingTap:
    """Stands in for whatever consumes the receiver's packets, showing each to an
    observer first."""

    def __init__(self, inner: Any, observer: Callable[[RtpPacket], None]) -> None:
        self.inner = inner
        self.observer = observer

    def add(self, packet: RtpPacket) -> Any:
        self.observer(packet)
        return self.inner.add(packet)


def observe_packets(receiver: RTCRtpReceiver, observer: Callable[[RtpPacket], None]) -> None:
    """Show every packet the receiver accepts to `observer`, then pass it on to what
    consumes it now (aiortc's jitter buffer or a tap): benchmarks that time packets."""
    current = getattr(receiver, JITTER_BUFFER_ATTR, None)
    if not callable(getattr(current, "add", None)):
        raise ReceivePathUnavailable(f"aiortc's RTCRtpReceiver has no {JITTER_BUFFER_ATTR}")
    setattr(receiver, JITTER_BUFFER_ATTR, _ObservingTap(current, observer))


def ice_connections(pc: RTCPeerConnection) -> list[object]:
    """The aioice connections under a peer connection's transports."""
    dtls = [t.sender.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        dtls.append(pc.sctp.transport)
    found: list[object] = []
    for transport in dtls:
        ice = getattr(transport, "transport", None)
        connection = getattr(ice, _ICE_CONNECTION_ATTR, None)
        if connection is not None and connection not in found:
            found.append(connection)
    return found


async def inject_rtp_packet(receiver: RTCRtpReceiver, packet: RtpPacket, arrival_ms: int) -> None:
    """Feed `packet` to the receiver as if it came off the network (benchmarks)."""
    await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_ms)


def shape_problems() -> list[str]:
    """What in the installed aiortc no longer matches the touches above (empty: all do)."""
    problems = []
    receiver_source = inspect.getsource(RTCRtpReceiver)
    if "self.__jitter_buffer = JitterBuffer(capacity=16, prefetch=4)" not in receiver_source:
        problems.append("RTCRtpReceiver no longer makes its audio JitterBuffer as we expect")
    if receiver_source.count("self.__jitter_buffer") != 3:
        problems.append("RTCRtpReceiver uses its jitter buffer somewhere new: review the tap")
    handler = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    if "pli_flag, encoded_frame = self.__jitter_buffer.add(packet)" not in handler:
        problems.append("RTCRtpReceiver._handle_rtp_packet no longer calls add(packet)")
    if list(inspect.signature(JitterBuffer.add).parameters) != ["self", "packet"]:
        problems.append("JitterBuffer.add takes other arguments")
    if list(inspect.signature(RTCRtpReceiver._handle_rtp_packet).parameters) != [
        "self",
        "packet",
        "arrival_time_ms",
    ]:
        problems.append("RTCRtpReceiver._handle_rtp_packet takes other arguments")
    if f"self.{_ICE_CONNECTION_ATTR} = gatherer.{_ICE_CONNECTION_ATTR}" not in inspect.getsource(
        RTCIceTransport
    ):
        problems.append("RTCIceTransport no longer keeps its aioice Connection in _connection")
    return problems
