"""One call: a peer connection, its tracks and data channel, and an agent session.

A `Call` owns everything a call holds, from offer to hang-up, in one task (named
`{call_id}`, started by `start`): it creates its peer connection, negotiates,
reports the answer (`answer`), then runs the call's tasks in a TaskGroup
(`{call_id}/uplink`, `/downlink`, `/messages`, `/watchdog`) until the caller hangs
up, the connection fails or the agent ends, and releases everything in `finally`.
Knows aiortc (through `rtc` and `media_tracks`) and the agent seam; not HTTP, not ADK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import MediaStreamTrack, RTCConfiguration, RTCDataChannel, RTCPeerConnection

from gateway.agent_api import (
    AgentAudio,
    AgentConnector,
    AgentError,
    AgentInterrupted,
    AgentSession,
    AgentText,
    Transcript,
)
from gateway.auth.rate_limits import TokenBucket
from gateway.calls.caller_channel import CallerChannel
from gateway.calls.service import HANGUP_TIMEOUT_S, Answer, CallRequest
from gateway.errors import (
    GatewayError,
    IceRestartUnsupported,
    MessageTooLarge,
    PreconditionFailed,
    RateLimited,
    error_reply,
)
from gateway.media_tracks import AgentAudioTrack, pump_caller_audio
from gateway.metrics.call_trace import CallTrace
from gateway.metrics.counters import COUNTERS
from gateway.metrics.instruments import (
    BARGE_IN_SILENCE,
    CALL_DURATION,
    CALL_JITTER,
    CALL_PACKET_LOSS,
    CALL_RTT,
    REPLY_LATENCY,
)
from gateway.rtc import peer_connection
from gateway.rtc.ice_policy import CandidateBudget, IcePolicy
from gateway.rtc.link_quality import link_quality
from gateway.rtc.offer_shape import ice_credentials
from gateway.rtc.receive_path import caller_audio_track
from gateway.wire import data_channel

logger = logging.getLogger(__name__)


#: Typed turns a call may send at once before `CallLimits.text_turns_per_s` applies.
TEXT_TURN_BURST = 5
#: Time a last fatal `error` gets to leave before hanging up aborts the association
#: (a few round trips on the worst link a call survives).
ERROR_FLUSH_S = 0.2


@dataclass(frozen=True, slots=True)
class CallLimits:
    """How long a call may take to connect, last and stay silent, and how fast it
    may type (`gateway.config.Settings` has the operator's values)."""

    setup_timeout_s: float = 30.0
    max_call_s: float = 3600.0
    idle_s: float = 60.0
    text_turns_per_s: float = 2.0


class _CallEnded(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Call:
    """One call from offer to hang-up; `start` it, then `answer`, `add_candidates`,
    `hang_up`. Validates the offer when made (raising `InvalidSdp`/`NoAudioInOffer`);
    the caller's candidates, offered and trickled, go through `ice_policy`."""

    def __init__(
        self,
        call_id: str,
        request: CallRequest,
        connector: AgentConnector,
        rtc_configuration: RTCConfiguration,
        *,
        limits: CallLimits | None = None,
        ice_policy: IcePolicy | None = None,
        on_ended: Callable[[Call], None] | None = None,
    ) -> None:
        self._shape = peer_connection.validate_offer(request.offer_sdp)
        self.call_id = call_id
        #: Names the call's one ICE session (aiortc cannot restart ICE, so it never
        #: changes): 96 random bits, URL-safe, so a valid entity-tag (RFC 9110 §8.8.3).
        self.ice_tag = secrets.token_urlsafe(12)
        self.request = request
        self._candidates = CandidateBudget(ice_policy or IcePolicy())
        self._offer_sdp = self._candidates.filter_sdp(request.offer_sdp)
        self._connector = connector
        self._rtc_configuration = rtc_configuration
        self._limits = limits or CallLimits()
        self._text_turns = TokenBucket(self._limits.text_turns_per_s, TEXT_TURN_BURST)
        self._last_heard = 0.0  # loop time of the caller's last audio or message
        self._connected = False
        self._oversized = False
        #: The conversation, once the agent session is open (None before).
        self.session_id: str | None = None
        self._on_ended = on_ended
        self._pc: RTCPeerConnection | None = None
        self._outbound = AgentAudioTrack()
        self._outbound.on_barge_in_silence = BARGE_IN_SILENCE.observe
        #: When the caller's latest turn reached the agent's side, until its reply.
        self._turn_at: float | None = None
        self._caller_tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
        self._channel = CallerChannel()
        self._answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self._hangup_requested = asyncio.Event()
        self._hangup_reason: str | None = None
        self._connection_changed = asyncio.Event()
        #: Loop time the draining gateway hangs up at, once told (`going_away`).
        self._going_away_at: float | None = None
        #: The call's span (a no-op unless tracing is configured: docs/observability.md).
        self._trace = CallTrace(
            call_id, mode=request.modality.value, continued=request.session_id is not None
        )

    @property
    def connected(self) -> bool:
        """Whether the caller's media has connected (it proved it holds its address)."""
        return self._connected

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        """The call's peer connection while it runs, for instrumentation (benchmarks);
        None before. The call alone negotiates and closes it."""
        return self._pc

    def start(self) -> None:
        """Start the call's task: negotiation, then the call until it ends."""
        # In the call span's context: every task the call starts inherits it, so ADK's
        # spans for this call's `run_live` join the call's trace (metrics/call_trace.py).
        context = self._trace.context()
        self._task = asyncio.create_task(self._run(), name=self.call_id, context=context)

    async def answer(self, timeout_s: float) -> Answer:
        """The SDP answer once negotiated and the agent session is open; the call's
        error if it failed first. On failure or timeout the call is hung up."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._answer), timeout_s)
        except BaseException:
            await self.hang_up("offer failed")
            raise

    async def add_candidates(self, sdpfrag: str, *, ice_tags: frozenset[str] | None = None) -> None:
        """Trickle ICE: the caller's candidates (RFC 8840 sdpfrag); `InvalidSdp` if bad.
        `PreconditionFailed` when `ice_tags` (None: any) name another ICE session;
        `IceRestartUnsupported` when the fragment brings new ICE credentials (an ICE
        restart, RFC 8839 §4.4.1.1.1): nothing is applied and the call goes on."""
        if ice_tags is not None and "*" not in ice_tags and self.ice_tag not in ice_tags:
            raise PreconditionFailed("If-Match names another ICE session than this call's")
        if not ice_credentials(sdpfrag) <= self._shape.ice_credentials:
            raise IceRestartUnsupported("this call cannot restart ICE")
        if self._pc is not None:
            await peer_connection.add_remote_candidates(
                self._pc, sdpfrag, budget=self._candidates, mid=self._shape.ice_mid
            )

    async def moved(self) -> None:
        """A newer call continues this one's conversation (the caller re-offered, say
        after a network change: aiortc cannot restart ICE): tell the caller, if it is
        still there, and end this one. A caller told `going_away` moved because we
        asked it to: no error for that, the call just ends."""
        if self._going_away_at is None:
            self._channel.send(
                data_channel.error_message(
                    "moved", "this conversation continues on a newer call", fatal=True
                )
            )
        await self.hang_up("moved to a newer call")

    def going_away(self, deadline_s: float) -> None:
        """The gateway drains: tell the caller (`going_away`, docs/protocol.md) that
        this call is hung up in `deadline_s`, so it re-offers with its session id (to
        another instance) first. A call not answered yet is told once it is."""
        if self._going_away_at is None:
            self._going_away_at = asyncio.get_running_loop().time() + deadline_s
            self._trace.event("going_away", deadline_s=deadline_s)
        self._tell_going_away()

    def _tell_going_away(self) -> None:
        if self._going_away_at is None or self.session_id is None:
            return
        left_s = max(0.0, self._going_away_at - asyncio.get_running_loop().time())
        self._channel.send(data_channel.going_away_message(self.session_id, left_s))

    async def hang_up(self, reason: str = "caller hung up") -> None:
        """End the call and wait (bounded) until it has released everything."""
        if self._hangup_reason is None:
            self._hangup_reason = reason
            self._trace.hang_up_requested(reason)
        self._hangup_requested.set()
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), HANGUP_TIMEOUT_S)
        except TimeoutError:
            logger.warning("call %s did not end in %.0f s; cancelling", self.call_id,
                           HANGUP_TIMEOUT_S)  # fmt: skip
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        """The whole life of the call. Never raises, except CancelledError."""
        started = time.monotonic()
        outcome = "hung up"
        pc = self._pc = peer_connection.new_peer_connection(self._rtc_configuration)
        try:
            outcome = await self._negotiate_and_run(pc)
        except asyncio.CancelledError:
            outcome = "gateway shutting down"
            raise
        except GatewayError as exc:
            outcome = exc.code
            self._trace.failed(exc.code)
            self._fail_answer(exc)
        except Exception:  # boundary: a bug ends this call, never the gateway
            logger.exception("call %s failed", self.call_id)
            outcome = "internal error"
            self._trace.failed("internal_error")
            self._fail_answer(GatewayError("internal error"))  # a JSON 500, not a crash
        finally:
            await peer_connection.close_quietly(pc)
            if self._candidates.dropped:
                logger.info("call %s dropped candidates: %s", self.call_id,
                            dict(self._candidates.dropped))  # fmt: skip
            if not self._answer.done():
                self._answer.cancel()
            logger.info("call %s ended after %.1f s: %s", self.call_id,
                        time.monotonic() - started, outcome)  # fmt: skip
            self._trace.end(outcome)
            if self._on_ended is not None:
                self._on_ended(self)

    def _fail_answer(self, exc: Exception) -> None:
        if not self._answer.done():
            self._answer.set_exception(exc)

    async def _negotiate_and_run(self, pc: RTCPeerConnection) -> str:
        self._listen(pc)
        with self._trace.step("negotiate"):
            answer_sdp = await peer_connection.negotiate(pc, self._offer_sdp, self._outbound)
        peer_connection.limit_message_size(pc, self._on_oversized_message)
        request = self.request
        async with self._connector.open_session(
            user_id=request.user_id,
            session_id=request.session_id,
            modality=request.modality,
            call_id=self.call_id,
        ) as agent:
            self._trace.event("agent.session.opened")
            mode = request.modality.value
            self.session_id = agent.session_id
            self._channel.send(data_channel.session_message(self.call_id, agent.session_id, mode))
            self._answer.set_result(
                Answer(self.call_id, agent.session_id, answer_sdp, ice_tag=self.ice_tag)
            )
            self._trace.event("answer.ready")  # signaling sends it at once
            logger.info("call %s answered", self.call_id)
            self._tell_going_away()  # the gateway began draining while this call connected
            answered = time.monotonic()
            try:
                reason = await self._run_tasks(pc, agent)
            finally:
                CALL_DURATION.labels("webrtc").observe(time.monotonic() - answered)
                await self._record_link_quality(pc)
        if self._channel.dropped_out or self._channel.dropped_in:
            logger.info("call %s dropped %d outgoing and %d incoming messages", self.call_id,
                        self._channel.dropped_out, self._channel.dropped_in)  # fmt: skip
        return reason

    async def _record_link_quality(self, pc: RTCPeerConnection) -> None:
        """The call's loss, jitter and RTT into /metrics (bounded; a failure to read
        them is not the call's failure)."""
        try:
            quality = await asyncio.wait_for(link_quality(pc), 1.0)
        except Exception as exc:  # boundary: statistics are best effort
            logger.debug("call %s: no link statistics (%s)", self.call_id, type(exc).__name__)
            return
        for direction, loss, jitter_s in (
            ("uplink", quality.uplink_loss, quality.uplink_jitter_s),
            ("downlink", quality.downlink_loss, quality.downlink_jitter_s),
        ):
            if loss is not None:
                CALL_PACKET_LOSS.labels(direction).observe(loss)
            if jitter_s is not None:
                CALL_JITTER.labels(direction).observe(jitter_s)
        if quality.rtt_s is not None:
            CALL_RTT.observe(quality.rtt_s)

    def _listen(self, pc: RTCPeerConnection) -> None:
        """Library callbacks only signal: pyee runs async handlers as untracked tasks."""

        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                # Our loss-tolerant receive path instead of aiortc's jitter buffer, which
                # turns each lost packet into 4-5 lost frames (see rtc/receive_path.py).
                self._caller_tracks.put_nowait(caller_audio_track(pc, track))

        def on_datachannel(channel: RTCDataChannel) -> None:
            self._channel.attach(channel)

        pc.on("track", on_track)
        pc.on("datachannel", on_datachannel)
        pc.on("connectionstatechange", self._connection_changed.set)

    def _on_oversized_message(self) -> None:
        """From aiortc's SCTP task: only signal (the watchdog ends the call)."""
        self._oversized = True
        self._connection_changed.set()

    async def _run_tasks(self, pc: RTCPeerConnection, agent: AgentSession) -> str:
        """Run the call's tasks until one of them ends the call; return why."""
        name = self.call_id
        reason = "ended"
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._uplink(agent), name=f"{name}/uplink")
                tasks.create_task(self._downlink(agent), name=f"{name}/downlink")
                tasks.create_task(self._messages(agent), name=f"{name}/messages")
                tasks.create_task(self._watchdog(pc), name=f"{name}/watchdog")
        except* _CallEnded as ended:
            reason = str(ended.exceptions[0])
        return reason

    async def _uplink(self, agent: AgentSession) -> None:
        """Caller audio to the agent, for the audio track the caller sends."""
        track = await self._caller_tracks.get()

        def to_agent(pcm: bytes) -> None:
            self._last_heard = _now()
            self._trace.caller_audio()
            agent.send_audio(pcm)

        await pump_caller_audio(track, to_agent)

    async def _downlink(self, agent: AgentSession) -> None:
        """Agent events to the outbound track and the data channel."""
        async for event in agent.events():
            self._trace.agent_event(event)
            if isinstance(event, AgentAudio | AgentText) and self._turn_at is not None:
                latency_s = time.monotonic() - self._turn_at
                self._turn_at = None
                REPLY_LATENCY.observe(latency_s)
                self._trace.turn_reply(latency_s)
            elif isinstance(event, Transcript) and event.role == "user" and event.final:
                self._turn_at = time.monotonic()
            if isinstance(event, AgentAudio):
                self._outbound.push(event.pcm)
                continue
            if isinstance(event, AgentInterrupted):
                self._outbound.flush()
            message = data_channel.event_message(event)
            if message is not None:
                droppable = isinstance(event, Transcript) and not event.final
                self._channel.send(message, droppable=droppable)
            if isinstance(event, AgentError) and event.fatal:
                raise _CallEnded(f"agent error: {event.code}")
        raise _CallEnded("agent session ended")

    async def _messages(self, agent: AgentSession) -> None:
        """Caller messages to the agent; a bad message gets an `error` and the call goes on."""
        while True:
            raw = await self._channel.receive()
            self._last_heard = _now()
            try:
                message = data_channel.parse_client_message(raw)
                if not self._text_turns.take(self._last_heard):
                    COUNTERS.add("text_turns_dropped")
                    raise RateLimited("too many typed turns; slow down", retry_after_s=1)
            except GatewayError as exc:
                reply = error_reply(exc)
                self._channel.send(data_channel.error_message(reply.code, reply.message))
                continue
            self._turn_at = time.monotonic()
            self._trace.caller_text()
            agent.send_text(message.text)

    async def _watchdog(self, pc: RTCPeerConnection) -> None:
        """End the call on hang-up, connection failure, media that never connects, a
        caller silent for `idle_s` (no audio, no message) or `max_call_s` reached."""
        limits = self._limits
        started = _now()
        setup_deadline = started + limits.setup_timeout_s
        connected = False
        while True:
            now = _now()
            if self._oversized:
                await self._refuse_oversized_message()
            if self._hangup_requested.is_set():
                raise _CallEnded(self._hangup_reason or "hung up")
            state = pc.connectionState
            if state in ("failed", "closed"):
                raise _CallEnded(f"connection {state}")
            if state == "connected" and not connected:
                connected = self._connected = True
                self._last_heard = max(self._last_heard, now)
                route = peer_connection.route(pc)
                logger.info("call %s connected (%s)", self.call_id, route)
                self._trace.connected(route)
            if not connected and now > setup_deadline:
                raise _CallEnded("media never connected")
            if now - started >= limits.max_call_s:
                COUNTERS.add("ended_max_length")
                too_long = f"calls end after {limits.max_call_s:.0f} s"
                await self._tell_caller("call_too_long", too_long)
                raise _CallEnded("maximum call length reached")
            if connected and now - self._last_heard >= limits.idle_s:
                COUNTERS.add("ended_idle")
                await self._tell_caller("idle", f"nothing heard for {limits.idle_s:.0f} s")
                raise _CallEnded(f"caller silent for {limits.idle_s:.0f} s")
            self._connection_changed.clear()
            deadlines = [started + limits.max_call_s]
            deadlines.append(self._last_heard + limits.idle_s if connected else setup_deadline)
            timeout = max(0.0, min(deadlines) - now)
            await _first_of(self._hangup_requested, self._connection_changed, timeout)

    async def _tell_caller(self, code: str, message: str) -> None:
        """A fatal `error` on the data channel, given a moment to leave (hanging up
        aborts the association): the caller learns why the call ends."""
        self._channel.send(data_channel.error_message(code, message, fatal=True))
        await asyncio.sleep(ERROR_FLUSH_S)

    async def _refuse_oversized_message(self) -> None:
        """Tell the caller (fatal `error`), end the call."""
        error = MessageTooLarge(
            f"a data-channel message exceeded {peer_connection.MAX_MESSAGE_BYTES} bytes "
            "(a=max-message-size)"
        )
        await self._tell_caller(error.code, error.message)
        raise _CallEnded("message too large")


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _first_of(a: asyncio.Event, b: asyncio.Event, limit_s: float | None) -> None:
    """Wait for either event (or the timeout), cancelling the other waiter."""
    waiters = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(waiters, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
