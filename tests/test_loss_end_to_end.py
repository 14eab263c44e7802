"""Caller audio under loss, end to end: a headless aiortc caller, an impaired link,
the running gateway (HTTP signaling, `call.py`, our receive path) and a fake agent
at our own seam counting the 16 kHz PCM it gets.

Pins down, with 40 +/- 20 ms jitter on the caller's link (4 s of audio per case):
- with 5 % and 20 % random loss, the 20 ms frames of PCM reaching the agent are
  within 1 percentage point of the RTP packets the gateway received (the relay's
  forwarded count: the link after it is loopback and loses nothing);
- no gap in what the agent hears is longer than the longest loss burst plus 40 ms,
  including a 200 ms blackout. Each caller frame is a tone of one of 16 frequencies
  in turn, so the agent side can tell which frames arrived from the PCM alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from gateway.audio.formats import AGENT_INPUT_RATE_HZ, SAMPLE_BYTES
from gateway.loadtest.source_track import add_source_track
from tests.support.fakes import FakeAgentConnector
from tests.support.netem.loss_call import FRAME_MS, ToneTrack, frame_steps
from tests.support.netem.relay import Impairment
from tests.support.netem.relay_thread import RelayThread
from tests.support.netem.sdp import route_via

FRAMES = 200
CODES_HZ = tuple(400.0 + 200.0 * i for i in range(16))
AGENT_FRAME_BYTES = round(AGENT_INPUT_RATE_HZ * FRAME_MS / 1000) * SAMPLE_BYTES
JITTER: dict[str, Any] = {"delay_s": 0.04, "jitter_s": 0.02}


async def call_through(
    start_gateway: Callable[..., Any], link: Impairment
) -> tuple[RelayThread, bytes]:
    """One call through `link` into the gateway; the relay's log and the agent's PCM."""
    connector = FakeAgentConnector()
    client = await start_gateway(connector)
    relay = await RelayThread(uplink=link).start()
    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tone = ToneTrack(FRAMES, CODES_HZ)
    try:
        add_source_track(caller, tone, "sendrecv")
        await caller.setLocalDescription(await caller.createOffer())
        offer, relay.caller_addr = route_via(caller.localDescription.sdp, relay.gateway_side)
        response = await client.post(
            "/calls", data=offer, headers={"Content-Type": "application/sdp"}
        )
        assert response.status == 201, await response.text()
        answer, relay.gateway_addr = route_via(await response.text(), relay.caller_side)
        await caller.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.wait_for(tone.finished.wait(), FRAMES * FRAME_MS / 1000 + 10)
        await relay.drained()
        agent = connector.last
        async with asyncio.timeout(5):  # until the agent's audio stops growing
            while True:
                heard = len(agent.audio)
                await asyncio.sleep(0.3)
                if len(agent.audio) == heard:
                    break
        assert (await client.delete(response.headers["Location"])).status == 204
        return relay, bytes(agent.audio)
    finally:
        await asyncio.wait_for(caller.close(), 5)
        await relay.aclose()


def assert_agent_heard_every_received_packet(relay: RelayThread, pcm: bytes) -> None:
    sent, received = relay.uplink.rtp_seen, relay.uplink.rtp_forwarded
    delivered = len(pcm) // AGENT_FRAME_BYTES
    assert received < sent, "the link should have lost packets"
    assert abs(received - delivered) / sent <= 0.01, (sent, received, delivered)
    burst = relay.uplink.max_burst()
    assert burst < len(CODES_HZ) - 1, "a burst this long makes frame steps ambiguous"
    steps = frame_steps(pcm, CODES_HZ, AGENT_INPUT_RATE_HZ)
    assert steps.max() * FRAME_MS <= burst * FRAME_MS + 40, (steps.max(), burst)


@pytest.mark.parametrize(("loss", "seed"), [(0.05, 31), (0.20, 32)])
async def test_random_loss_reaches_the_agent_as_only_the_lost_frames(
    start_gateway: Callable[..., Any], loss: float, seed: int
) -> None:
    relay, pcm = await call_through(start_gateway, Impairment(loss=loss, seed=seed, **JITTER))
    assert_agent_heard_every_received_packet(relay, pcm)


async def test_a_blackout_reaches_the_agent_as_one_gap_of_its_length(
    start_gateway: Callable[..., Any],
) -> None:
    link = Impairment(blackouts=((1.5, 0.2),), seed=33, **JITTER)
    relay, pcm = await call_through(start_gateway, link)
    assert relay.uplink.max_burst() >= 6
    assert_agent_heard_every_received_packet(relay, pcm)
