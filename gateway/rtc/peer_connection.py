"""Peer connections from untrusted SDP: validate, negotiate, close, all contained.

aiortc's SDP parser raises far more than ValueError on hostile input (AttributeError,
AssertionError, KeyError, IndexError, TypeError, StopIteration-as-RuntimeError), its
asserts vanish under `python -O`, and `pc.close()` can itself raise after a half-applied
description. Everything here turns those into `InvalidSdp` and never leaks a peer
connection. DTLS works with any peer: an `actpass` offer is answered `passive` (the
caller is DTLS client) and our client also offers ECDHE-RSA suites (`_aiortc`, item 4).
Knows aiortc; speaks SDP strings to its callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging

from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription, candidate_from_sdp

from gateway.errors import InvalidSdp, NoAudioInOffer
from gateway.rtc import _aioice, _aiortc

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0
#: RTP payload types allowed in an offer (RFC 5761: 64-95 would collide with RTCP).
_VALID_PAYLOAD_TYPES = set(range(0, 64)) | set(range(96, 128))


def validate_offer(sdp: str) -> None:
    """Parse an offer without touching any connection; raise `InvalidSdp`/`NoAudioInOffer`."""
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # the parser's failure modes are many; all are the client's
        raise InvalidSdp(f"the offer is not valid SDP ({type(exc).__name__})") from None
    audio = [m for m in description.media if m.kind == "audio"]
    if not audio:
        raise NoAudioInOffer("the offer has no audio m-line")
    for media in description.media:
        if media.kind in ("audio", "video"):
            bad = [pt for pt in media.fmt if pt not in _VALID_PAYLOAD_TYPES]
            if bad:
                raise InvalidSdp(f"invalid RTP payload type {bad[0]}")
    for media in description.media:
        if media.dtls is None or not media.dtls.fingerprints:
            raise InvalidSdp("the offer has no DTLS fingerprint")
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise InvalidSdp("the offer has no ICE credentials")
    if not any(codec.name.lower() == "opus" for m in audio for codec in m.rtp.codecs):
        raise InvalidSdp("the offer's audio has no Opus codec")


def candidate_allowed(address: str, *, allow_loopback: bool) -> bool:
    """Whether ICE may send connectivity checks to a remote candidate address.

    aioice probes whatever an offer lists; link-local (cloud metadata), multicast
    and unspecified addresses are never a caller. Loopback only when ICE itself
    is restricted to loopback (tests, a local client).
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address.endswith(".local")  # mDNS names from browsers
    if ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return False
    return allow_loopback or not ip.is_loopback


def filter_candidate_lines(sdp: str, *, allow_loopback: bool) -> str:
    """Drop `a=candidate` lines whose address is not allowed (see `candidate_allowed`)."""
    kept = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            if len(fields) >= 5 and not candidate_allowed(fields[4], allow_loopback=allow_loopback):
                continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n"


async def negotiate(pc: RTCPeerConnection, offer_sdp: str, outbound: MediaStreamTrack) -> str:
    """Apply a validated offer, send `outbound` on the caller's audio, return the answer.

    Raises `InvalidSdp` when aiortc cannot use the offer.
    """
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
    except Exception as exc:
        raise InvalidSdp(f"the offer cannot be used ({type(exc).__name__})") from None
    _aiortc.answer_actpass_as_dtls_server(pc)  # the caller is DTLS client: see there
    pc.addTrack(outbound)  # reuses the offered audio transceiver
    answer = await pc.createAnswer()
    await pc.setLocalDescription(answer)
    return str(pc.localDescription.sdp)


async def add_remote_candidates(
    pc: RTCPeerConnection, sdpfrag: str, *, allow_loopback: bool
) -> int:
    """Trickle ICE (RFC 8840 sdpfrag): add allowed `a=candidate` lines; return how many.

    Candidates arriving after ICE has completed are ignored: aioice has no ICE
    restart, and a pair added then starts a consent task that outlives `close()`.
    """
    done = pc.iceConnectionState in ("completed", "failed", "closed")
    added = 0
    for raw in sdpfrag.splitlines():
        line = raw.strip()
        if not line.startswith("a=candidate:"):
            continue
        try:
            candidate = candidate_from_sdp(line[len("a=candidate:") :])
        except Exception:
            raise InvalidSdp("invalid candidate line") from None
        if done or not candidate_allowed(candidate.ip, allow_loopback=allow_loopback):
            continue
        candidate.sdpMLineIndex = 0
        await pc.addIceCandidate(candidate)
        added += 1
    return added


def new_peer_connection(configuration: RTCConfiguration) -> RTCPeerConnection:
    """A peer connection whose DTLS works with RSA and ECDSA peers in either role."""
    pc = RTCPeerConnection(configuration=configuration)
    _aiortc.offer_rsa_cipher_suites(pc)
    return pc


async def close_quietly(pc: RTCPeerConnection) -> None:
    """Close a peer connection, bounded in time; its failures are logged, not raised."""
    ice_connections = _aiortc.ice_connections(pc)
    try:
        await asyncio.wait_for(pc.close(), CLOSE_TIMEOUT_S)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logger.debug("peer connection close failed: %s", type(exc).__name__)
        # A half-applied description can leave aiortc's transports open; stop them.
        for transceiver in pc.getTransceivers():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(transceiver.stop(), 1.0)
    await _cancel_late_consent_checks(ice_connections)


async def _cancel_late_consent_checks(connections: list[object]) -> None:
    """Work around an aioice race: hung up while ICE is checking, `connect()` resumes
    after `close()` and starts a consent-freshness task that runs on (for up to 30 s)
    on closed sockets. `connect()` polls its checks every 20 ms, so watching for that
    task over 3 such periods catches it. `tests/test_call.py::test_hang_up_while_connecting`
    fails if this stops working.
    """
    for _ in range(3):
        await asyncio.sleep(0.02)
        for connection in connections:
            await _aioice.cancel_consent_checks(connection)
