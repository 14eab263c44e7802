"""The seams into aiortc, aioice and ADK internals still fit the installed libraries.

Every touch of a library's private internals lives in one seam module per library
(`gateway/rtc/_aiortc.py`, `gateway/rtc/_aioice.py`, `gateway/adk/_adk.py`). These
tests fail when a library changes under one of them, before a caller notices.

Pins down:
- each seam module finds the library's code shaped as it relies on;
- aiortc: a tapped receiver hands its packets to the tap and decodes nothing; a
  receiver without the seam is refused clearly (`ReceivePathUnavailable`);
- aiortc: the SCTP guard passes messages within the limit and refuses one growing
  past it while it is reassembled (called once, nothing of it delivered or held);
- aiortc: the peer connection's own `__connect` tasks are found (to retrieve what
  they raise when hung up mid-connect);
- aioice: restricting host addresses changes what ICE gathers;
- aiortc DTLS: our client also offers ECDHE-RSA suites (aiortc's offers none); an
  `actpass` or `active` offer is answered `passive`, a `passive` one `active`, and
  two real aiortc peers connect in each case;
- ADK: the bounded request queue sees ADK's backlog grow and shrink and drops
  audio past its bound; a Gemini model's Live client is a google-genai client.
"""

from __future__ import annotations

import asyncio
import re

import aioice.ice
import pytest
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.rtp import RtpPacket
from google.adk.models.google_llm import Gemini
from google.genai import Client, types

from gateway.adk import _adk
from gateway.agent_bridge import _BoundedLiveRequestQueue
from gateway.rtc import _aioice, _aiortc, ice, peer_connection
from tests.support.peers import PeerPair


@pytest.mark.parametrize("seam", [_aiortc, _aioice, _adk], ids=["aiortc", "aioice", "adk"])
def test_the_library_is_still_shaped_as_the_seam_relies_on(seam: object) -> None:
    assert seam.shape_problems() == []  # type: ignore[attr-defined]


async def _offered_receiver(caller: RTCPeerConnection, callee: RTCPeerConnection) -> RTCRtpReceiver:
    caller.addTransceiver("audio", direction="sendonly")
    await caller.setLocalDescription(await caller.createOffer())
    await callee.setRemoteDescription(RTCSessionDescription(caller.localDescription.sdp, "offer"))
    return callee.getTransceivers()[0].receiver


async def test_a_tapped_receiver_hands_every_packet_to_the_tap(peers: PeerPair) -> None:
    caller, callee = peers
    receiver = await _offered_receiver(caller, callee)
    seen: list[int] = []
    _aiortc.tap_packets(receiver, lambda packet: seen.append(packet.sequence_number))
    with pytest.raises(ValueError, match="tapped already"):
        _aiortc.tap_packets(receiver, lambda _: None)
    for seq in (7, 9, 8):
        packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960)
        # What the receiver's packet handler does with an accepted packet.
        assert getattr(receiver, _aiortc.JITTER_BUFFER_ATTR).add(packet) == (False, None)
    assert seen == [7, 9, 8]


async def test_installing_refuses_clearly_when_the_seam_is_gone(peers: PeerPair) -> None:
    caller, callee = peers
    receiver = await _offered_receiver(caller, callee)
    _aiortc.ensure_tappable(receiver)  # there while aiortc is as we know it
    delattr(receiver, _aiortc.JITTER_BUFFER_ATTR)  # what a changed aiortc would look like
    with pytest.raises(_aiortc.ReceivePathUnavailable):
        _aiortc.tap_packets(receiver, lambda _: None)


async def _connected_channels(
    caller: RTCPeerConnection, callee: RTCPeerConnection
) -> tuple[RTCDataChannel, asyncio.Queue[str | bytes]]:
    """A data channel from caller to callee, open; the callee's messages on a queue."""
    channel = caller.createDataChannel("events")
    opened = asyncio.Event()
    channel.on("open", opened.set)
    inbox: asyncio.Queue[str | bytes] = asyncio.Queue()
    callee.on("datachannel", lambda c: c.on("message", inbox.put_nowait))
    await caller.setLocalDescription(await caller.createOffer())
    await callee.setRemoteDescription(RTCSessionDescription(caller.localDescription.sdp, "offer"))
    await callee.setLocalDescription(await callee.createAnswer())
    await caller.setRemoteDescription(RTCSessionDescription(callee.localDescription.sdp, "answer"))
    await asyncio.wait_for(opened.wait(), 10)
    return channel, inbox


async def test_the_sctp_guard_refuses_a_message_growing_past_the_limit(peers: PeerPair) -> None:
    caller, callee = peers
    channel, inbox = await _connected_channels(caller, callee)
    assert callee.sctp is not None
    refused = asyncio.Event()
    _aiortc.limit_inbound_messages(callee.sctp, 16_384, refused.set)
    with pytest.raises(ValueError, match="limited already"):
        _aiortc.limit_inbound_messages(callee.sctp, 16_384, refused.set)
    channel.send("a" * 16_000)  # fragmented (~14 chunks), within the limit
    channel.send("b" * 10)
    assert await asyncio.wait_for(inbox.get(), 5) == "a" * 16_000
    assert await asyncio.wait_for(inbox.get(), 5) == "b" * 10
    channel.send("c" * 200_000)  # aiortc sends whatever it is given
    await asyncio.wait_for(refused.wait(), 5)
    channel.send("d")
    await asyncio.sleep(0.3)
    assert inbox.empty()  # neither the oversized message nor anything after it
    assert _aiortc.inbound_held_bytes(callee.sctp) == 0


async def test_the_connect_tasks_of_a_peer_connection_are_found(peers: PeerPair) -> None:
    caller, callee = peers
    caller.addTransceiver("audio")
    await caller.setLocalDescription(await caller.createOffer())
    await callee.setRemoteDescription(RTCSessionDescription(caller.localDescription.sdp, "offer"))
    assert _aiortc.retrieve_connect_errors(callee) == 1
    await callee.setLocalDescription(await callee.createAnswer())
    assert _aiortc.retrieve_connect_errors(callee) >= 1


def test_host_address_restriction_reaches_aioice() -> None:
    """Fails if aioice stops gathering through `aioice.ice.get_host_addresses`."""
    with ice.host_addresses_restricted(["127.0.0.1", "::1"]):
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
    assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]  # the session's


async def test_ice_gathers_only_on_the_restricted_addresses() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        # Not the session's 127.0.0.1: only the restriction can make it this one.
        with ice.host_addresses_restricted(["127.0.0.2"]):
            pc.addTransceiver("audio")
            await pc.setLocalDescription(await pc.createOffer())
        candidates = [
            line.split()[4]
            for line in pc.localDescription.sdp.splitlines()
            if line.startswith("a=candidate:")
        ]
        assert candidates
        assert set(candidates) == {"127.0.0.2"}
    finally:
        await asyncio.wait_for(pc.close(), 5)


async def test_the_bounded_queue_sees_adks_backlog() -> None:
    queue = _BoundedLiveRequestQueue(max_pending=3)
    for _ in range(5):
        queue.send_realtime(types.Blob(data=b"\0\0", mime_type="audio/pcm;rate=16000"))
    assert (_adk.queued_requests(queue), queue.dropped_chunks) == (3, 2)
    await queue.get()  # how ADK's live flow takes requests
    assert _adk.queued_requests(queue) == 2
    queue.send_realtime(types.Blob(data=b"\0\0", mime_type="audio/pcm;rate=16000"))
    assert (_adk.queued_requests(queue), queue.dropped_chunks) == (3, 2)


async def test_a_gemini_models_live_client_is_a_genai_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "not-a-real-key")
    monkeypatch.delenv("GOOGLE_GENAI_USE_VERTEXAI", raising=False)
    client = _adk.live_api_client(Gemini(model="gemini-3.8-live"))
    assert isinstance(client, Client)
    assert callable(client.aio.live.connect)


async def test_our_dtls_client_also_offers_rsa_suites(peers: PeerPair) -> None:
    """Fails if the certificate swap stops reaching the SSL context aiortc builds."""
    stock, _ = peers
    ours = peer_connection.new_peer_connection(RTCConfiguration(iceServers=[]))
    try:
        offered = _aiortc.dtls_client_ciphers(ours)
        assert offered[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"  # RFC 8827's mandatory suite
        assert "ECDHE-RSA-AES128-GCM-SHA256" in offered
        assert not any("-RSA-" in c for c in _aiortc.dtls_client_ciphers(stock))  # aiortc's
    finally:
        await peer_connection.close_quietly(ours)


@pytest.mark.parametrize(
    ("offered", "answered"),
    [("actpass", "passive"), ("active", "passive"), ("passive", "active")],
)
async def test_the_answer_takes_the_dtls_role_the_offer_leaves(
    peers: PeerPair, offered: str, answered: str
) -> None:
    """Both DTLS roles connect with two real aiortc peers (ECDSA on both sides)."""
    caller, gateway_side = peers
    await asyncio.wait_for(gateway_side.close(), 5)  # replaced by the gateway's kind
    gateway_side = peer_connection.new_peer_connection(RTCConfiguration(iceServers=[]))
    try:
        caller.addTransceiver("audio", direction="sendrecv")
        caller.createDataChannel("whip")
        await caller.setLocalDescription(await caller.createOffer())
        offer = caller.localDescription.sdp.replace("a=setup:actpass", f"a=setup:{offered}")
        answer = await peer_connection.negotiate(gateway_side, offer, AudioStreamTrack())
        assert re.findall(r"a=setup:(\w+)", answer) == [answered, answered]  # audio, data
        await caller.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        async with asyncio.timeout(10):
            while {caller.connectionState, gateway_side.connectionState} != {"connected"}:
                await asyncio.sleep(0.05)
    finally:
        await peer_connection.close_quietly(gateway_side)
