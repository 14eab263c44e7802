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
4. DTLS with any peer (`answer_actpass_as_dtls_server`, `offer_rsa_cipher_suites`):
   the DTLS transports' role (`RTCDtlsTransport._set_role`, read by `createAnswer`)
   and the peer connection's certificate (`RTCPeerConnection.__certificates`, whose
   `_create_ssl_context` sets the cipher list). See those functions for why.
5. The SCTP transport's DATA chunk handler (`RTCSctpTransport._receive_data_chunk`)
   and what it reassembles into (`_inbound_streams[id].reassembly`, `_advertised_rwnd`):
   aiortc reassembles a data-channel message of any size before handing it over
   (20 MB were accepted although 256 KiB were advertised), and that handler is the
   one place a chunk is seen before it is held. `limit_inbound_messages` puts a guard
   in front of it, per transport, that refuses a message growing past the limit.
6. The peer connection's own `__connect` tasks (started with `ensure_future` by
   `setRemoteDescription` and `setLocalDescription`, kept by nobody): hung up while
   they run, they raise `InvalidStateError("RTCIceTransport is closed")` and asyncio
   reports "Task exception was never retrieved" (seen under hostile load on a busy
   machine). `retrieve_connect_errors` finds them by their coroutine and retrieves
   (logs) what they raise.

Imports aiortc only (and pyOpenSSL, which aiortc's DTLS is built on).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from aiortc import (
    RTCCertificate,
    RTCDtlsTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSctpTransport,
)
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcdtlstransport import SRTP_PROFILES, SRTPProtectionProfile
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_LAST_FRAG,
    SCTP_DATA_UNORDERED,
    USERDATA_MAX_LENGTH,
    DataChunk,
    InboundStream,
)
from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription
from OpenSSL import SSL

logger = logging.getLogger(__name__)

#: The receiver's private jitter buffer, name-mangled (`self.__jitter_buffer`).
JITTER_BUFFER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_ICE_CONNECTION_ATTR = "_connection"
#: The peer connection's private certificate list, name-mangled (`self.__certificates`).
_CERTIFICATES_ATTR = "_RTCPeerConnection__certificates"
_DATA_CHUNK_HANDLER = "_receive_data_chunk"
_INBOUND_STREAMS_ATTR = "_inbound_streams"
_RECEIVE_WINDOW_ATTR = "_advertised_rwnd"
_WHOLE_MESSAGE = SCTP_DATA_FIRST_FRAG | SCTP_DATA_LAST_FRAG
_CONNECT_COROUTINE = "RTCPeerConnection.__connect"


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


#: The cipher suites our DTLS client offers: aiortc's four ECDHE-ECDSA suites, each
#: followed by its ECDHE-RSA twin, in the order Chrome offers them (aiortc issue #1335
#: lists Chrome's ClientHello). aiortc 1.16 offers ECDHE-ECDSA only (its PR #1011 cut
#: the list to avoid ClientHello fragmentation with mbed TLS peers; 8 suites stay well
#: under Chrome's 11), so an RSA-certificate DTLS server such as GStreamer's webrtcbin
#: (`whipclientsink`) fails with "no shared cipher" (aiortc PR #1392, #1421, issue
#: #1434; FIELD-NOTES "DTLS with RSA peers"). RFC 8827 s6.5 makes
#: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 mandatory, not exclusive; it stays first.
DTLS_CLIENT_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:"
    b"ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
)


class _AnyPeerCertificate(RTCCertificate):
    """aiortc's certificate (the same ECDSA key), whose DTLS contexts also offer the
    ECDHE-RSA suites (`DTLS_CLIENT_CIPHERS`). As a DTLS server with an ECDSA key only
    ECDSA suites can be chosen, so this changes only what our client offers."""

    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        context: SSL.Context = super()._create_ssl_context(srtp_profiles)
        context.set_cipher_list(DTLS_CLIENT_CIPHERS)
        return context


def offer_rsa_cipher_suites(pc: RTCPeerConnection) -> None:
    """Make `pc`'s DTLS client work with RSA-certificate servers too.

    Call right after constructing `pc`: aiortc hands its certificate list to each DTLS
    transport it creates (on `setRemoteDescription`), and only then builds the SSL
    context. Used when an offer says `a=setup:passive`, forcing us to be the client.
    """
    certificates = getattr(pc, _CERTIFICATES_ATTR)
    setattr(
        pc,
        _CERTIFICATES_ATTR,
        [_AnyPeerCertificate(key=c._key, cert=c._cert) for c in certificates],
    )


def dtls_client_ciphers(pc: RTCPeerConnection) -> list[str]:
    """The DTLS 1.2 cipher suites `pc`'s DTLS client would offer (OpenSSL names;
    OpenSSL's TLS 1.3 suites, `TLS_*`, never apply to DTLS 1.2 and are left out)."""
    certificate = getattr(pc, _CERTIFICATES_ATTR)[0]
    connection = SSL.Connection(certificate._create_ssl_context(srtp_profiles=SRTP_PROFILES))
    connection.set_connect_state()
    return [c for c in connection.get_cipher_list() if not c.startswith("TLS_")]


def answer_actpass_as_dtls_server(pc: RTCPeerConnection) -> None:
    """After an offer is applied: where it said `a=setup:actpass`, we will answer
    `a=setup:passive` (DTLS server) instead of aiortc's `a=setup:active`.

    Why: (1) the caller, as DTLS client, picks from its own cipher list, and every
    stack we know offers the ECDHE-ECDSA suites our certificate needs, while aiortc's
    client cannot talk to an RSA server (GStreamer webrtcbin, `whipclientsink`:
    "no shared cipher", FIELD-NOTES "DTLS with RSA peers"); (2) as DTLS client we could
    send our ClientHello before the caller has applied our answer and knows our
    fingerprint: libdatachannel then fails the call with "unknown CA" (reported: 3
    calls in 40 on a busy 2-core machine; not reproduced here, docs/benchmarks.md).
    A passive answer cannot race so: the caller sends the ClientHello, after ICE,
    which it cannot finish without our answer.
    RFC 5763 s5 lets the answerer choose `active` or `passive`; it recommends
    `active` only so the handshake can overlap the answer's trip. RFC 8842, which
    replaced those offer/answer rules, leaves the answerer the same choice, and the
    WHIP working group considered requiring passive answers (wish-wg/webrtc-http-
    ingest-protocol issue #6). Here the answer is the HTTP response and the caller
    cannot finish ICE before it has it, so `active` buys next to nothing.
    An offer that says `active` or `passive` keeps aiortc's handling (aiortc PR #1090):
    the role it leaves is the one asked for. aiortc's `createAnswer` writes the
    transport's role into the answer when it is not "auto".
    """
    offer = SessionDescription.parse(pc.remoteDescription.sdp)
    actpass = {m.rtp.muxId for m in offer.media if m.dtls is not None and m.dtls.role == "auto"}
    transports: list[RTCDtlsTransport] = [
        t.receiver.transport for t in pc.getTransceivers() if t.mid in actpass
    ]
    if pc.sctp is not None and pc.sctp.mid in actpass:
        transports.append(pc.sctp.transport)
    for transport in transports:
        if transport._role == "auto":
            transport._set_role("server")


class _MessageSizeGuard:
    """Stands in front of an SCTP transport's DATA chunk handler: passes chunks on
    while the message each belongs to stays within `max_bytes` and the transport
    holds no more than the receive window it advertised; past either, it drops what
    is held and every chunk after, and calls `on_oversized` once (the caller broke
    the limits it was given; the call ends)."""

    def __init__(
        self,
        sctp: RTCSctpTransport,
        max_bytes: int,
        on_oversized: Callable[[], None],
    ) -> None:
        self._sctp = sctp
        self._inner = getattr(sctp, _DATA_CHUNK_HANDLER)
        self._max_bytes = max_bytes
        self._on_oversized = on_oversized
        self.refused = False

    async def __call__(self, chunk: DataChunk) -> None:
        if not self.refused and self._fits(chunk):
            await self._inner(chunk)
            return
        if not self.refused:
            self.refused = True
            for stream in self._streams().values():
                stream.reassembly.clear()
            self._on_oversized()

    def _streams(self) -> dict[int, InboundStream]:
        streams: dict[int, InboundStream] = getattr(self._sctp, _INBOUND_STREAMS_ATTR)
        return streams

    def _fits(self, chunk: DataChunk) -> bool:
        size = len(chunk.user_data)
        window: int = getattr(self._sctp, _RECEIVE_WINDOW_ATTR)
        if size - window > USERDATA_MAX_LENGTH:  # one chunk past it: a window probe
            return False
        if chunk.flags & _WHOLE_MESSAGE == _WHOLE_MESSAGE:
            return size <= self._max_bytes
        stream = self._streams().get(chunk.stream_id)
        held = stream.reassembly if stream is not None else []
        unordered = chunk.flags & SCTP_DATA_UNORDERED
        # Without I-DATA a stream's fragments of one ordered message share its stream
        # sequence number; held unordered fragments are all of incomplete messages.
        parts = [
            c
            for c in held
            if (c.flags & SCTP_DATA_UNORDERED) == unordered
            and (unordered or c.stream_seq == chunk.stream_seq)
        ]
        if any(c.tsn == chunk.tsn for c in parts):
            return True  # a retransmission: aiortc drops it
        return size + sum(len(c.user_data) for c in parts) <= self._max_bytes


def limit_inbound_messages(
    sctp: RTCSctpTransport, max_bytes: int, on_oversized: Callable[[], None]
) -> None:
    """Refuse data-channel messages larger than `max_bytes` while they are being
    reassembled (before they take more memory than that), and more held data than
    the receive window aiortc advertises: `on_oversized` is called once, and from
    then on the transport takes no more data. Install before the association starts."""
    if isinstance(getattr(sctp, _DATA_CHUNK_HANDLER, None), _MessageSizeGuard):
        raise ValueError("the transport is limited already")
    setattr(sctp, _DATA_CHUNK_HANDLER, _MessageSizeGuard(sctp, max_bytes, on_oversized))


def inbound_held_bytes(sctp: RTCSctpTransport) -> int:
    """Bytes of incoming data-channel messages the transport holds, not yet delivered."""
    streams: dict[int, InboundStream] = getattr(sctp, _INBOUND_STREAMS_ATTR)
    return sum(len(c.user_data) for s in streams.values() for c in s.reassembly)


def retrieve_connect_errors(pc: RTCPeerConnection) -> int:
    """Retrieve (log) whatever `pc`'s pending `__connect` tasks raise; call right after
    `setRemoteDescription` / `setLocalDescription`. Returns how many it found."""
    found = 0
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if getattr(coro, "__qualname__", "") != _CONNECT_COROUTINE or frame is None:
            continue
        if frame.f_locals.get("self") is pc:
            task.add_done_callback(_log_connect_error)
            found += 1
    return found


def _log_connect_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.debug("peer connection task ended: %s: %s", type(exc).__name__, exc)


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
    for method in (RTCPeerConnection.setRemoteDescription, RTCPeerConnection.setLocalDescription):
        if "asyncio.ensure_future(self.__connect())" not in inspect.getsource(method):
            problems.append(f"RTCPeerConnection.{method.__name__} no longer starts __connect")
    return problems + _dtls_shape_problems() + _sctp_shape_problems()


def _dtls_shape_problems() -> list[str]:
    problems = []
    pc_source = inspect.getsource(RTCPeerConnection)
    if "self.__certificates = [RTCCertificate.generateCertificate()]" not in pc_source:
        problems.append("RTCPeerConnection no longer keeps its certificates in __certificates")
    if "RTCDtlsTransport(iceTransport, self.__certificates)" not in pc_source:
        problems.append("RTCPeerConnection no longer hands __certificates to its transports")
    if "self.__local_certificate._create_ssl_context(" not in inspect.getsource(
        RTCDtlsTransport.start
    ):
        problems.append("RTCDtlsTransport.start no longer builds its context from the certificate")
    if list(inspect.signature(RTCCertificate._create_ssl_context).parameters) != [
        "self",
        "srtp_profiles",
    ]:
        problems.append("RTCCertificate._create_ssl_context takes other arguments")
    answer_source = inspect.getsource(RTCPeerConnection.createAnswer)
    if 'if dtlsTransport._role == "auto":' not in answer_source or (
        "media.dtls.role = dtlsTransport._role" not in answer_source
    ):
        problems.append("createAnswer no longer answers with the DTLS transport's role")
    if "self._role = role" not in inspect.getsource(RTCDtlsTransport._set_role):
        problems.append("RTCDtlsTransport._set_role no longer sets _role")
    return problems


def _sctp_shape_problems() -> list[str]:
    problems = []
    if f"await self.{_DATA_CHUNK_HANDLER}(chunk)" not in inspect.getsource(
        RTCSctpTransport._receive_chunk
    ):
        problems.append("RTCSctpTransport._receive_chunk no longer calls _receive_data_chunk")
    handler = inspect.getsource(RTCSctpTransport._receive_data_chunk)
    for needed in (
        "inbound_stream.add_chunk(chunk)",
        "self._advertised_rwnd -= len(chunk.user_data)",
    ):
        if needed not in handler:
            problems.append(f"RTCSctpTransport._receive_data_chunk no longer does {needed}")
    init = inspect.getsource(RTCSctpTransport.__init__)
    if "self._inbound_streams: dict[int, InboundStream] = {}" not in init:
        problems.append("RTCSctpTransport no longer keeps InboundStreams in _inbound_streams")
    if "self.reassembly: list[DataChunk] = []" not in inspect.getsource(InboundStream):
        problems.append("InboundStream no longer holds chunks in `reassembly`")
    if "self.stream_seq, self.protocol" not in inspect.getsource(DataChunk.__init__):
        problems.append("DataChunk no longer has tsn, stream_id, stream_seq")
    return problems
