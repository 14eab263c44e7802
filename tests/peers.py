"""Headless aiortc callers for tests: a real peer over loopback, nothing mocked.

`CallerPeer` offers sendrecv audio plus one data channel, plays PCM in real time
(20 ms frames, paced), records every frame it receives with its arrival time, and
every data-channel message.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from gateway.audio.pcm import rms, tone
from gateway.rtc import peer_connection

RATE_HZ = 48_000
FRAME_SAMPLES = 960
FRAME_S = FRAME_SAMPLES / RATE_HZ


def tone_pcm(
    duration_s: float, freq_hz: float = 300.0, amplitude: int = 6000, rate_hz: int = RATE_HZ
) -> bytes:
    return tone(duration_s, rate_hz, freq_hz, amplitude)


class PcmPlayerTrack(MediaStreamTrack):
    """Plays queued 48 kHz mono PCM in paced 20 ms frames; silence when idle."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pcm = bytearray()
        self._start: float | None = None
        self._pts = 0
        self.played_until: float | None = None  # monotonic time the queue ran dry

    def play(self, pcm: bytes) -> None:
        self._pcm += pcm
        self.played_until = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._pts / RATE_HZ
        if (wait := due - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        need = FRAME_SAMPLES * 2
        chunk = bytes(self._pcm[:need])
        del self._pcm[:need]
        if len(chunk) < need and self.played_until is None and not self._pcm:
            self.played_until = time.monotonic()
        chunk = chunk.ljust(need, b"\0")
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(chunk, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = RATE_HZ
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE_HZ)
        self._pts += FRAME_SAMPLES
        return frame


@dataclass
class ReceivedFrame:
    at: float
    rms: float
    samples: int


async def frames_of(track: MediaStreamTrack) -> AsyncIterator[av.AudioFrame]:
    """The track's frames until it ends."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        yield frame


@dataclass
class CallerPeer:
    """One caller. `offer()` -> POST it -> `accept(answer)`; then talk and listen."""

    with_channel: bool = True
    pc: RTCPeerConnection = field(
        default_factory=lambda: RTCPeerConnection(RTCConfiguration(iceServers=[]))
    )
    mic: PcmPlayerTrack = field(default_factory=PcmPlayerTrack)
    frames: list[ReceivedFrame] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    _new_message: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pc.addTrack(self.mic)
        self.channel = self.pc.createDataChannel("events") if self.with_channel else None
        if self.channel is not None:
            self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    def _on_message(self, message: str | bytes) -> None:
        self.messages.append(json.loads(message))
        self._new_message.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.create_task(self._listen(track), name="peer/listen"))

    async def _listen(self, track: MediaStreamTrack) -> None:
        async for frame in frames_of(track):
            self._on_frame(frame)

    def _on_frame(self, frame: av.AudioFrame) -> None:
        pcm = bytes(frame.planes[0])[: frame.samples * 2 * len(frame.layout.channels)]
        self.frames.append(ReceivedFrame(time.monotonic(), rms(pcm), frame.samples))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))

    async def wait_connected(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while self.pc.connectionState != "connected":
                await asyncio.sleep(0.02)

    async def wait_message(self, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first message (already received or coming) whose fields equal `match`."""
        async with asyncio.timeout(timeout):
            while True:
                for message in self.messages:
                    if all(message.get(k) == v for k, v in match.items()):
                        return message
                self._new_message.clear()
                await self._new_message.wait()

    def send(self, message: dict[str, Any] | str) -> None:
        assert self.channel is not None
        self.channel.send(message if isinstance(message, str) else json.dumps(message))

    async def wait_channel_open(self, timeout: float = 10.0) -> None:
        assert self.channel is not None
        async with asyncio.timeout(timeout):
            while self.channel.readyState != "open":
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        await peer_connection.close_quietly(self.pc)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def call_gateway(client: Any, caller: CallerPeer, query: str = "") -> str:
    """WHIP-style: POST the caller's offer to `/calls`, apply the answer, return Location."""
    response = await client.post(
        f"/calls{query}", data=await caller.offer(), headers={"Content-Type": "application/sdp"}
    )
    assert response.status == 201, await response.text()
    assert response.content_type == "application/sdp"
    await caller.accept(await response.text())
    location = response.headers["Location"]
    assert location.startswith("/calls/")
    return str(location)


@contextlib.asynccontextmanager
async def live_call(
    client: Any, *, query: str = "", with_channel: bool = True, connected: bool = True
) -> AsyncIterator[tuple[CallerPeer, str]]:
    """A caller in a call with the gateway behind `client`; closed on exit."""
    caller = CallerPeer(with_channel=with_channel)
    try:
        location = await call_gateway(client, caller, query)
        if connected:
            await caller.wait_connected()
        yield caller, location
    finally:
        await caller.close()
