"""One headless WebRTC caller: the load tester's, the tests' and the benchmarks'.

A caller offers sendrecv Opus audio (a `PacedSourceTrack` as its microphone) and,
by default, one data channel, the way WHIP-shaped clients call the gateway. It
dials with `POST /calls` (`dial`) and hangs up with `DELETE` (`hang_up`). What it
hears is taken one of two ways:

- per packet (`packet_listener`): the receiver's packets go straight to the listener
  through the receive-path tap (`rtc.receive_path.tap_packets`), with no jitter
  buffer and no decoder thread: what the load tester does, so a caller costs little;
- decoded (the default): aiortc's own receive path decodes the agent's audio and
  each 20 ms frame is kept as a `HeardFrame` (arrival time, RMS), with its mono PCM
  when `keep_audio` is set (tests that recognize speech).

Data-channel messages are kept with their arrival times. A dead gateway (its process
killed, its machine gone) is noticed by the silence of its RTP (`wait_media_lost`): the
gateway sends a packet every 20 ms for the whole call, silence included, so
`MEDIA_SILENCE_S` without one means it is gone, long before ICE consent expires (~30 s)
and the connection state says "failed". Everything a caller holds
(its peer connection, microphone, listening task) is released by `close`.
Imports aiortc, aiohttp, PyAV and the load tester's track; nothing of the server
but the ICE configuration and the receive-path tap.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from gateway.audio.pcm import rms
from gateway.loadtest.source_track import PacedSourceTrack, add_source_track
from gateway.rtc import ice
from gateway.rtc.peer_connection import close_quietly
from gateway.rtc.receive_path import tap_packets

logger = logging.getLogger(__name__)

SDP_TYPE = "application/sdp"
HANGUP_TIMEOUT_S = 5.0
#: No RTP from the gateway for this long: it is gone (docs/protocol.md, "Noticing a
#: dead gateway"). Its outbound track sends a packet every 20 ms, silence included
#: (`gateway.media_tracks.AgentAudioTrack`); the browser client uses the same 2 s.
MEDIA_SILENCE_S = 2.0


@dataclass(frozen=True, slots=True)
class HeardFrame:
    """One decoded frame of the agent's audio, as the caller heard it."""

    at: float
    rms: float
    samples: int


@dataclass(frozen=True, slots=True)
class DialResult:
    """The gateway's answer to an offer."""

    status: int
    body: str
    content_type: str
    location: str | None = None
    retry_after_s: float | None = None
    #: The call's ICE session (`ETag`, quoted): a trickle `PATCH` sends it in `If-Match`.
    etag: str | None = None
    #: The conversation (`X-Session-Id`): a re-offer naming it continues it.
    session_id: str | None = None
    #: The gateway process that owns the call (`X-Gateway-Worker`, docs/protocol.md).
    worker_pid: int | None = None

    def error_code(self) -> str:
        """The JSON error's `code`, or the start of the body."""
        try:
            return str(json.loads(self.body)["error"]["code"])
        except (ValueError, KeyError, TypeError):
            return self.body[:80]


async def frames_of(track: MediaStreamTrack) -> AsyncIterator[Any]:
    """The track's frames until it ends (an async iterator)."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        yield frame


class HeadlessCaller:
    """One caller: `dial` (or `offer` + `accept`), then talk through `mic`, listen,
    message; `close` when done."""

    def __init__(
        self,
        *,
        mic: PacedSourceTrack | None = None,
        with_channel: bool = True,
        packet_listener: Callable[[RtpPacket], None] | None = None,
        keep_audio: bool = False,
        ice_servers: Sequence[Mapping[str, str]] = (),
    ) -> None:
        """`ice_servers`: W3C `RTCIceServer` dictionaries, as `GET /ice-servers` hands
        them out (none by default: never a public STUN server)."""
        self.pc = RTCPeerConnection(
            _configuration(ice_servers) if ice_servers else ice.rtc_configuration([])
        )
        self.mic = mic or PacedSourceTrack()
        self.frames: list[HeardFrame] = []
        """Decoded frames of the agent's audio (not with a `packet_listener`)."""
        self.heard: list[tuple[float, bytes]] = []
        """(arrival time, 48 kHz mono PCM) of each frame, with `keep_audio`."""
        self.messages: list[dict[str, Any]] = []
        """Data-channel messages (JSON objects), in arrival order."""
        self.message_times: list[float] = []
        self.location: str | None = None
        #: The call's `ETag` once dialled (for `If-Match` on a trickle `PATCH`).
        self.etag: str | None = None
        self.dropped = asyncio.Event()
        """Set when the connection failed or closed."""
        self.first_media_at: float | None = None
        """Arrival time (monotonic) of the gateway's first RTP packet or decoded frame."""
        self.last_media_at: float | None = None
        """Arrival time (monotonic) of the gateway's latest RTP packet or decoded frame."""
        self._keep_audio = keep_audio
        self._new_message = asyncio.Event()
        self._state_changed = asyncio.Event()
        self._channel_open = asyncio.Event()
        self._media_started = asyncio.Event()
        self._listening: list[asyncio.Task[None]] = []
        transceiver = add_source_track(self.pc, self.mic)
        if packet_listener is not None:
            tap_packets(transceiver.receiver, self._heard_packet(packet_listener))
        self.channel = self.pc.createDataChannel("events") if with_channel else None
        if self.channel is not None:
            self.channel.on("message", self._on_message)
            self.channel.on("open", self._channel_open.set)
        self.pc.on("track", self._on_track if packet_listener is None else _ignore)
        self.pc.on("connectionstatechange", self._on_connection_state)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))

    async def dial(self, http: aiohttp.ClientSession, base_url: str, query: str = "") -> DialResult:
        """`POST {base_url}/calls{query}` with the offer; on 201 apply the answer and
        remember the call's Location."""
        async with http.post(
            f"{base_url}/calls{query}", data=await self.offer(), headers={"Content-Type": SDP_TYPE}
        ) as response:
            result = DialResult(
                status=response.status,
                body=await response.text(),
                content_type=response.content_type,
                location=response.headers.get("Location"),
                retry_after_s=_seconds(response.headers.get("Retry-After")),
                etag=response.headers.get("ETag"),
                session_id=response.headers.get("X-Session-Id"),
                worker_pid=_pid(response.headers.get("X-Gateway-Worker")),
            )
        if result.status == 201:
            await self.accept(result.body)
            self.location = result.location
            self.etag = result.etag
        return result

    async def hang_up(self, http: aiohttp.ClientSession, base_url: str) -> int | None:
        """`DELETE` the call (bounded); its status, or None if it could not be sent."""
        if not self.location:
            return None
        url = f"{base_url}/calls/{self.location.rsplit('/', 1)[-1]}"
        try:
            async with asyncio.timeout(HANGUP_TIMEOUT_S):
                async with http.delete(url) as response:
                    await response.read()
                    return response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.debug("hang-up failed: %s", exc)
            return None

    async def wait_connected(self, limit_s: float = 10.0) -> None:
        async with asyncio.timeout(limit_s):
            while self.pc.connectionState != "connected":
                self._state_changed.clear()
                await self._state_changed.wait()

    async def wait_channel_open(self, limit_s: float = 10.0) -> None:
        assert self.channel is not None
        async with asyncio.timeout(limit_s):
            await self._channel_open.wait()

    async def wait_media_lost(self, silent_s: float = MEDIA_SILENCE_S) -> float:
        """Returns once no RTP has arrived for `silent_s`: the arrival time of the last
        packet (or, if none came, the time this was called). Call it once connected."""
        since = time.monotonic()
        while True:
            last = self.last_media_at if self.last_media_at is not None else since
            remaining = last + silent_s - time.monotonic()
            if remaining <= 0:
                return last
            await asyncio.sleep(remaining)

    async def wait_message(self, limit_s: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first message (already received or coming) whose fields equal `match`."""
        async with asyncio.timeout(limit_s):
            while True:
                for message in self.messages:
                    if all(message.get(k) == v for k, v in match.items()):
                        return message
                self._new_message.clear()
                await self._new_message.wait()

    async def wait_message_after(self, after: float, limit_s: float, **match: Any) -> float | None:
        """Arrival time of the first message at or after `after` matching `match`;
        None when none comes within `limit_s`."""
        try:
            async with asyncio.timeout(limit_s):
                while (at := self.message_after(after, **match)) is None:
                    self._new_message.clear()
                    await self._new_message.wait()
                return at
        except TimeoutError:
            return None

    def message_after(self, after: float, **match: Any) -> float | None:
        """Arrival time of the first message received at or after `after` matching."""
        for at, message in zip(self.message_times, self.messages, strict=True):
            if at >= after and all(message.get(k) == v for k, v in match.items()):
                return at
        return None

    def message_time(self, message: dict[str, Any]) -> float:
        """Arrival time of a message from `messages` (compared by identity)."""
        index = next(i for i, m in enumerate(self.messages) if m is message)
        return self.message_times[index]

    def audio_after(self, at: float) -> bytes:
        """Mono PCM heard at or after `at` (with `keep_audio`)."""
        return b"".join(pcm for t, pcm in self.heard if t >= at)

    def send(self, message: dict[str, Any] | str) -> None:
        assert self.channel is not None
        self.channel.send(message if isinstance(message, str) else json.dumps(message))

    async def close(self) -> None:
        await close_quietly(self.pc)
        self.mic.stop()
        for task in self._listening:
            task.cancel()
        await asyncio.gather(*self._listening, return_exceptions=True)

    def _on_message(self, raw: str | bytes) -> None:
        at = time.monotonic()
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if isinstance(message, dict):
            self.messages.append(message)
            self.message_times.append(at)
            self._new_message.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            task = asyncio.create_task(self._listen(track), name="caller/listen")
            self._listening.append(task)

    async def _listen(self, track: MediaStreamTrack) -> None:
        async for frame in frames_of(track):
            self._on_frame(frame)

    def _heard_packet(self, listener: Callable[[RtpPacket], None]) -> Callable[[RtpPacket], None]:
        def heard(packet: RtpPacket) -> None:
            self._heard_media(time.monotonic())
            listener(packet)

        return heard

    def _on_frame(self, frame: av.AudioFrame) -> None:
        channels = len(frame.layout.channels)
        pcm = bytes(frame.planes[0])[: frame.samples * 2 * channels]
        now = time.monotonic()
        self._heard_media(now)
        if self._keep_audio:
            mono = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)[:, 0].tobytes()
            self.heard.append((now, mono))
            self.frames.append(HeardFrame(now, rms(mono), frame.samples))
        else:
            self.frames.append(HeardFrame(now, rms(pcm), frame.samples))

    async def wait_media(self, limit_s: float = 10.0) -> float:
        """The arrival time of the gateway's first RTP (waits up to `limit_s` for it)."""
        async with asyncio.timeout(limit_s):
            await self._media_started.wait()
        assert self.first_media_at is not None
        return self.first_media_at

    def _heard_media(self, at: float) -> None:
        if self.first_media_at is None:
            self.first_media_at = at
            self._media_started.set()
        self.last_media_at = at

    def _on_connection_state(self) -> None:
        self._state_changed.set()
        if self.pc.connectionState in ("failed", "closed"):
            self.dropped.set()


def _configuration(servers: Sequence[Mapping[str, str]]) -> RTCConfiguration:
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in servers
        ]
    )


def _ignore(_: object) -> None:
    """A "track" handler for callers whose receiver is tapped: nothing to decode."""


def _pid(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
