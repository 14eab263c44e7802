"""Headless callers for tests: the load tester's `HeadlessCaller` against a gateway
started in the test (aiohttp's `TestClient`), over loopback, nothing mocked.

A caller offers sendrecv Opus plus one data channel, plays PCM in real time
(`caller.mic.play_pcm`, 20 ms paced frames), and keeps every frame it hears with its
arrival time, and every data-channel message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from aiortc import RTCPeerConnection

from gateway.audio.formats import WEBRTC_RATE_HZ
from gateway.audio.pcm import rms, tone
from gateway.loadtest.headless_caller import DialResult, HeadlessCaller, HeardFrame
from gateway.loadtest.source_track import PacedSourceTrack

__all__ = [
    "DialResult",
    "HeadlessCaller",
    "HeardFrame",
    "PacedSourceTrack",
    "PeerPair",
    "assert_answered",
    "call_gateway",
    "listening_caller",
    "live_call",
    "rms",
    "seed_turn",
    "tone_pcm",
]

GatewayClient = TestClient[Any, Any]


def tone_pcm(
    duration_s: float, freq_hz: float = 300.0, amplitude: int = 6000, rate_hz: int = WEBRTC_RATE_HZ
) -> bytes:
    """A caller's test voice: a sine tone as mono s16 PCM (48 kHz unless told)."""
    return tone(duration_s, rate_hz, freq_hz, amplitude)


def listening_caller(*, with_channel: bool = True) -> HeadlessCaller:
    """A caller that also keeps the mono PCM it hears and the level of each frame it
    sends (tests that recognize speech or time it)."""
    return HeadlessCaller(
        with_channel=with_channel, mic=PacedSourceTrack(keep_levels=True), keep_audio=True
    )


async def assert_answered(caller: HeadlessCaller) -> dict[str, Any]:
    """Speech in, the scripted agent's 1.5 s tone out, heard by the caller; the
    call's `session` message."""
    session = await caller.wait_message(type="session", limit_s=20)
    heard_from = len(caller.frames)
    caller.mic.play_pcm(tone_pcm(0.8))
    await caller.wait_message(type="transcript", role="user", final=True, limit_s=20)
    async with asyncio.timeout(20):
        while sum(f.rms > 1000 for f in caller.frames[heard_from:]) < 50:
            await asyncio.sleep(0.1)
    return session


async def seed_turn(ws: aiohttp.ClientWebSocketResponse) -> str:
    """A typed turn on the seed protocol; the agent's text until `turn_complete`."""
    await ws.send_json({"mime_type": "text/plain", "data": "hello"})
    text = ""
    async with asyncio.timeout(15):
        while not (message := await ws.receive_json()).get("turn_complete"):
            if message.get("mime_type") == "text/plain":
                text += message["data"]
    return text


def base_url(client: GatewayClient) -> str:
    return str(client.make_url("")).rstrip("/")


async def call_gateway(client: GatewayClient, caller: HeadlessCaller, query: str = "") -> str:
    """WHIP-style: POST the caller's offer to `/calls`, apply the answer, return Location."""
    result = await caller.dial(client.session, base_url(client), query)
    assert result.status == 201, result.body
    assert result.content_type == "application/sdp"
    location = result.location
    assert location is not None
    assert location.startswith("/calls/")
    return location


@contextlib.asynccontextmanager
async def live_call(
    client: GatewayClient,
    *,
    query: str = "",
    with_channel: bool = True,
    connected: bool = True,
    keep_audio: bool = False,
) -> AsyncIterator[tuple[HeadlessCaller, str]]:
    """A caller in a call with the gateway behind `client`; closed on exit."""
    caller = HeadlessCaller(
        with_channel=with_channel, mic=PacedSourceTrack(keep_levels=True), keep_audio=keep_audio
    )
    try:
        location = await call_gateway(client, caller, query)
        if connected:
            await caller.wait_connected()
        yield caller, location
    finally:
        await caller.close()


#: Two bare aiortc peer connections (caller, callee) with no ICE servers: the `peers`
#: fixture, closed after the test.
PeerPair = tuple[RTCPeerConnection, RTCPeerConnection]
