"""One call: a peer connection, its tracks and data channel, and an agent session.

`run_call` owns everything a call holds, in one task: it negotiates, reports the
answer through `CallHandle.answer`, then runs the call's tasks in a TaskGroup
(`{call_id}/uplink`, `/downlink`, `/messages`, `/watchdog`) until the caller hangs
up, the connection fails or the agent ends, and releases everything in `finally`.
Knows aiortc (through media_tracks and peer) and the agent seam; not HTTP, not ADK.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection

from gateway.agent_api import (
    AgentAudio,
    AgentConnector,
    AgentError,
    AgentInterrupted,
    AgentSession,
    Modality,
    Transcript,
)
from gateway.errors import GatewayError
from gateway.media_tracks import AgentAudioTrack, pump_caller_audio
from gateway.rtc import peer_connection
from gateway.rtc.receive_path import caller_audio_track
from gateway.wire import data_channel

logger = logging.getLogger(__name__)

#: Caller messages waiting to be handled; beyond it they are dropped and counted.
INBOX_SIZE = 64
#: Messages for the caller before its channel opens; beyond it they are dropped.
OUTBOX_BEFORE_OPEN = 64
#: Past this much unsent data on the channel, partial transcripts are dropped.
MAX_CHANNEL_BUFFERED_BYTES = 1 << 20


@dataclass
class CallSpec:
    """What the caller asked for."""

    offer_sdp: str
    user_id: str
    session_id: str | None
    modality: Modality


@dataclass
class CallHandle:
    """The manager's view of a running call."""

    call_id: str
    spec: CallSpec
    #: (answer SDP, session id) once negotiated; the call's error if it failed first.
    answer: asyncio.Future[tuple[str, str]] = field(default_factory=asyncio.Future)
    hangup_reason: str | None = None
    pc: RTCPeerConnection | None = None
    hangup_requested: asyncio.Event = field(default_factory=asyncio.Event)

    def hang_up(self, reason: str) -> None:
        if self.hangup_reason is None:
            self.hangup_reason = reason
        self.hangup_requested.set()


class _CallEnded(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Channel:
    """The caller's data channel once it opens; sends are bounded and counted."""

    channel: RTCDataChannel | None = None
    pending: list[str] = field(default_factory=list)
    dropped: int = 0

    def send(self, message: str, *, droppable: bool = False) -> None:
        channel = self.channel
        if channel is None:
            if len(self.pending) < OUTBOX_BEFORE_OPEN:
                self.pending.append(message)
            else:
                self.dropped += 1
        elif channel.readyState != "open" or (
            droppable and channel.bufferedAmount > MAX_CHANNEL_BUFFERED_BYTES
        ):
            self.dropped += 1
        else:
            channel.send(message)

    def attach(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        pending, self.pending = self.pending, []
        for message in pending:
            self.send(message)


@dataclass
class _CallParts:
    """Everything the call's tasks share."""

    handle: CallHandle
    pc: RTCPeerConnection
    outbound: AgentAudioTrack = field(default_factory=AgentAudioTrack)
    remote_tracks: asyncio.Queue[MediaStreamTrack] = field(default_factory=asyncio.Queue)
    channel: _Channel = field(default_factory=_Channel)
    inbox: asyncio.Queue[str | bytes] = field(default_factory=lambda: asyncio.Queue(INBOX_SIZE))
    inbox_dropped: int = 0
    connection_changed: asyncio.Event = field(default_factory=asyncio.Event)

    def listen(self) -> None:
        """Library callbacks only signal: pyee runs async handlers as untracked tasks."""
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self.connection_changed.set)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            # Our loss-tolerant receive path instead of aiortc's jitter buffer, which
            # turns each lost packet into 4-5 lost frames (see receive_path.py).
            self.remote_tracks.put_nowait(caller_audio_track(self.pc, track))

    def _on_datachannel(self, dc: RTCDataChannel) -> None:
        if self.channel.channel is None:  # the first channel the caller opens
            dc.on("message", self._on_message)
            self.channel.attach(dc)

    def _on_message(self, message: str | bytes) -> None:
        try:
            self.inbox.put_nowait(message)
        except asyncio.QueueFull:
            self.inbox_dropped += 1


async def run_call(
    handle: CallHandle, connector: AgentConnector, pc: RTCPeerConnection, *, setup_timeout_s: float
) -> None:
    """The whole life of one call. Never raises, except CancelledError."""
    handle.pc = pc
    started = time.monotonic()
    outcome = "hung up"
    try:
        outcome = await _negotiate_and_run(_CallParts(handle, pc), connector, setup_timeout_s)
    except asyncio.CancelledError:
        outcome = "gateway shutting down"
        raise
    except GatewayError as exc:
        outcome = exc.code
        _fail_answer(handle, exc)
    except Exception as exc:  # boundary: a bug ends this call, never the gateway
        logger.exception("call %s failed", handle.call_id)
        outcome = "internal error"
        _fail_answer(handle, exc)
    finally:
        await peer_connection.close_quietly(pc)
        if not handle.answer.done():
            handle.answer.cancel()
        logger.info(
            "call %s ended after %.1f s: %s", handle.call_id, time.monotonic() - started, outcome
        )


def _fail_answer(handle: CallHandle, exc: Exception) -> None:
    if not handle.answer.done():
        handle.answer.set_exception(exc)


async def _negotiate_and_run(
    parts: _CallParts, connector: AgentConnector, setup_timeout_s: float
) -> str:
    handle, spec = parts.handle, parts.handle.spec
    parts.listen()
    answer_sdp = await peer_connection.negotiate(parts.pc, spec.offer_sdp, parts.outbound)
    async with connector.open_session(
        user_id=spec.user_id, session_id=spec.session_id, modality=spec.modality
    ) as agent:
        parts.channel.send(
            data_channel.session_message(handle.call_id, agent.session_id, spec.modality.value)
        )
        handle.answer.set_result((answer_sdp, agent.session_id))
        logger.info("call %s answered", handle.call_id)
        reason = await _run_tasks(parts, agent, setup_timeout_s)
    if parts.channel.dropped or parts.inbox_dropped:
        logger.info(
            "call %s dropped %d outgoing and %d incoming messages",
            handle.call_id,
            parts.channel.dropped,
            parts.inbox_dropped,
        )
    return reason


async def _run_tasks(parts: _CallParts, agent: AgentSession, setup_timeout_s: float) -> str:
    """Run the call's tasks until one of them ends the call; return why."""
    name = parts.handle.call_id
    reason = "ended"
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_uplink(parts, agent), name=f"{name}/uplink")
            tasks.create_task(_downlink(parts, agent), name=f"{name}/downlink")
            tasks.create_task(_messages(parts, agent), name=f"{name}/messages")
            tasks.create_task(_watchdog(parts, setup_timeout_s), name=f"{name}/watchdog")
    except* _CallEnded as ended:
        reason = str(ended.exceptions[0])
    return reason


async def _uplink(parts: _CallParts, agent: AgentSession) -> None:
    """Caller audio to the agent, for each audio track the caller sends."""
    track = await parts.remote_tracks.get()
    await pump_caller_audio(track, agent.send_audio)


async def _downlink(parts: _CallParts, agent: AgentSession) -> None:
    """Agent events to the outbound track and the data channel."""
    async for event in agent.events():
        if isinstance(event, AgentAudio):
            parts.outbound.push(event.pcm)
            continue
        if isinstance(event, AgentInterrupted):
            parts.outbound.flush()
        message = data_channel.event_message(event)
        if message is not None:
            droppable = isinstance(event, Transcript) and not event.final
            parts.channel.send(message, droppable=droppable)
        if isinstance(event, AgentError) and event.fatal:
            raise _CallEnded(f"agent error: {event.code}")
    raise _CallEnded("agent session ended")


async def _messages(parts: _CallParts, agent: AgentSession) -> None:
    """Caller messages to the agent; a bad message gets an `error` and the call goes on."""
    while True:
        raw = await parts.inbox.get()
        try:
            message = data_channel.parse_client_message(raw)
        except GatewayError as exc:
            parts.channel.send(data_channel.error_message(exc.code, exc.message))
            continue
        agent.send_text(message.text)


async def _watchdog(parts: _CallParts, setup_timeout_s: float) -> None:
    """End the call on hang-up, connection failure, or media that never connects."""
    pc, handle = parts.pc, parts.handle
    deadline = time.monotonic() + setup_timeout_s
    connected = False
    while True:
        if handle.hangup_requested.is_set():
            raise _CallEnded(handle.hangup_reason or "hung up")
        state = pc.connectionState
        if state in ("failed", "closed"):
            raise _CallEnded(f"connection {state}")
        if state == "connected" and not connected:
            connected = True
            logger.info("call %s connected", handle.call_id)
        if not connected and time.monotonic() > deadline:
            raise _CallEnded("media never connected")
        parts.connection_changed.clear()
        timeout = None if connected else max(0.0, deadline - time.monotonic())
        await _first_of(handle.hangup_requested, parts.connection_changed, timeout)


async def _first_of(a: asyncio.Event, b: asyncio.Event, limit_s: float | None) -> None:
    """Wait for either event (or the timeout), cancelling the other waiter."""
    waiters = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(waiters, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
