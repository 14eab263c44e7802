"""Peer connections from untrusted SDP: validate, negotiate, close, all contained.

aiortc's SDP parser raises far more than ValueError on hostile input (AttributeError,
AssertionError, KeyError, IndexError, TypeError, StopIteration-as-RuntimeError), its
asserts vanish under `python -O`, an offer it parses can still break `createAnswer`
and `setLocalDescription`, and `pc.close()` can itself raise after a half-applied
description. Offers are checked first (`offer_shape.validate_offer`), candidates go
through the call's `ice_policy.CandidateBudget`, every negotiation step turns a
failure into `InvalidSdp`, and no peer connection is ever leaked. Data-channel
messages are held to the size the answer advertises. DTLS works with any peer: an
`actpass` offer is answered `passive` (the caller is DTLS client) and our client
also offers ECDHE-RSA suites (`_aiortc`, item 4). Knows aiortc; speaks SDP strings
to its callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable

from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from gateway.errors import InvalidSdp
from gateway.rtc import _aioice, _aiortc
from gateway.rtc.ice_policy import CandidateBudget
from gateway.rtc.offer_shape import OfferShape, validate_offer

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0
#: The largest data-channel message the gateway takes, advertised in the answer
#: (`a=max-message-size`, RFC 8841) instead of aiortc's 256 KiB. Our messages are at
#: most 16 KiB (`wire.data_channel.MAX_MESSAGE_BYTES`, larger ones get an `error`);
#: 64 KiB is also what a peer assumes when the attribute is missing. Browsers refuse
#: to send more; a caller that does anyway is cut off (`limit_message_size`).
MAX_MESSAGE_BYTES = 64 * 1024
_MAX_MESSAGE_SIZE_LINE = re.compile(r"^a=max-message-size:\d+", re.MULTILINE)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "OfferShape",
    "add_remote_candidates",
    "close_quietly",
    "limit_message_size",
    "negotiate",
    "new_peer_connection",
    "route",
    "validate_offer",
]


async def negotiate(pc: RTCPeerConnection, offer_sdp: str, outbound: MediaStreamTrack) -> str:
    """Apply a validated offer, send `outbound` on the caller's audio, return the answer.

    Raises `InvalidSdp` when aiortc cannot use the offer, at whichever step. A
    failure to open sockets (the gateway's own trouble) is raised as it is.
    """
    step = "setRemoteDescription"
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        _aiortc.retrieve_connect_errors(pc)  # a hang-up mid-connect makes them raise
        step = "DTLS role"
        _aiortc.answer_actpass_as_dtls_server(pc)  # the caller is DTLS client: see there
        step = "addTrack"
        pc.addTrack(outbound)  # reuses the offered audio transceiver
        step = "createAnswer"
        answer = await pc.createAnswer()
        step = "setLocalDescription"
        await pc.setLocalDescription(answer)
        _aiortc.retrieve_connect_errors(pc)
    except OSError:
        raise
    except Exception as exc:  # aiortc's failure modes on odd offers are many
        logger.info("offer refused by aiortc at %s: %s", step, type(exc).__name__)
        raise InvalidSdp(f"the offer cannot be answered ({type(exc).__name__})") from None
    sdp = str(pc.localDescription.sdp)
    return _MAX_MESSAGE_SIZE_LINE.sub(f"a=max-message-size:{MAX_MESSAGE_BYTES}", sdp)


def limit_message_size(pc: RTCPeerConnection, on_oversized: Callable[[], None]) -> bool:
    """Hold the caller's data-channel messages to `MAX_MESSAGE_BYTES` (what the answer
    advertises): `on_oversized` is called once a message grows past it (nothing more
    is taken from the caller after that). False if the offer had no data channel."""
    if pc.sctp is None:
        return False
    _aiortc.limit_inbound_messages(pc.sctp, MAX_MESSAGE_BYTES, on_oversized)
    return True


async def add_remote_candidates(
    pc: RTCPeerConnection, sdpfrag: str, *, budget: CandidateBudget, mid: str
) -> int:
    """Trickle ICE (RFC 8840 sdpfrag): add the `a=candidate` lines `budget` admits to
    the ICE transport of `mid`; return how many. `InvalidSdp` for a line that is not
    a candidate (those before it stay added).

    Candidates arriving after ICE has completed are ignored: aioice has no ICE
    restart, and a pair added then starts a consent task that outlives `close()`.
    """
    added = 0
    for raw in sdpfrag.splitlines():
        line = raw.strip()
        if not line.startswith("a=candidate:"):
            continue
        candidate = budget.admit(line)
        if candidate is None or pc.iceConnectionState in ("completed", "failed", "closed"):
            continue
        candidate.sdpMid = mid
        try:
            await pc.addIceCandidate(candidate)
        except Exception as exc:  # e.g. the call closing meanwhile
            logger.debug("trickled candidate not added: %s", type(exc).__name__)
            continue
        added += 1
    return added


def route(pc: RTCPeerConnection) -> str:
    """How a connected call's media travels, as its selected ICE pair's candidate
    types `local/remote` (`host/host`, `relay/host`: through our TURN relay, ...);
    "" before ICE has selected a pair."""
    for connection in _aiortc.ice_connections(pc):
        for local, remote in _aioice.nominated_candidate_types(connection):
            return f"{local}/{remote}"
    return ""


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
