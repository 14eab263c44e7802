"""One load-test call: offer, answer, talk in turns for the hold time, hang up.

The caller speaks the prompt, waits for the agent's audio, waits for it to end (or,
with barge-in, speaks again partway into it), pauses, and repeats until the call's
hold time is over. Everything it measures lands in a `CallResult`.

Imports aiortc, aiohttp and the load tester's own modules.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

import aiohttp
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from gateway.loadtest.config import LoadTestConfig
from gateway.loadtest.listener import GAP_S, AgentAudioMonitor, tap_receiver
from gateway.loadtest.outbound import PromptTrack
from gateway.loadtest.prompt import EncodedPrompt
from gateway.loadtest.results import CallOutcome, CallResult
from gateway.loadtest.stalls import LoopStalls
from gateway.rtc import ice
from gateway.rtc.peer_connection import close_quietly

logger = logging.getLogger(__name__)

#: How long a barge-in waits for the agent's audio to stop before giving up.
BARGE_IN_SILENCE_TIMEOUT_S = 2.0
#: An answer longer than this is cut off by the caller's next prompt anyway.
MAX_ANSWER_S = 30.0
HANGUP_TIMEOUT_S = 5.0
#: Gaps listed (time, length) per call in the report; all are counted.
GAPS_IN_REPORT = 20


@dataclass
class CallSession:
    """A call in progress: its peer, its measurements, the messages it received."""

    index: int
    config: LoadTestConfig
    prompt: EncodedPrompt
    stalls: LoopStalls | None = None
    """This process's event-loop stalls, to tell the tester's gaps from the server's."""
    result: CallResult = field(init=False)
    monitor: AgentAudioMonitor = field(init=False)
    messages: list[tuple[float, str, str]] = field(default_factory=list)
    """(arrival time, type, role) of each data-channel message."""

    def __post_init__(self) -> None:
        self.result = CallResult(index=self.index)
        self.monitor = AgentAudioMonitor(self.config.energy_threshold)
        self.mic = PromptTrack(self.prompt)
        self.pc = RTCPeerConnection(ice.rtc_configuration([]))
        self._dropped = asyncio.Event()
        self._new_message = asyncio.Event()
        self._tap_error: Exception | None = None

    async def run(self, http: aiohttp.ClientSession) -> CallResult:
        try:
            await self._run(http)
        except Exception as exc:  # a boundary: one call's failure must not end the test
            self._fail(f"{type(exc).__name__}: {exc}")
            logger.debug("call %d failed", self.index, exc_info=True)
        finally:
            await close_quietly(self.pc)
            self.mic.stop()
            self._collect()
        return self.result

    async def _run(self, http: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_connection_state)
        transceiver = self.pc.addTransceiver(self.mic, direction="sendrecv")
        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.name.lower() == "opus"]
        transceiver.setCodecPreferences(opus)  # pre-encoded packets are Opus
        channel = self.pc.createDataChannel("events")
        channel.on("message", self._on_message)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        posted = time.monotonic()
        location = await self._post_offer(http, self.pc.localDescription.sdp)
        if location is None:
            return
        self.result.answer_s = time.monotonic() - posted
        try:
            if self._tap_error is not None:
                raise self._tap_error
            first = await self.monitor.wait_first_packet(self.config.connect_timeout_s)
            if first is None:
                self._fail(f"no media within {self.config.connect_timeout_s:g} s")
                return
            self.result.connect_s = first - started
            held_from = time.monotonic()
            deadline = held_from + self.config.duration_s
            talking = asyncio.ensure_future(self._converse(deadline))
            dropped = asyncio.ensure_future(self._dropped.wait())
            try:
                await asyncio.wait({talking, dropped}, timeout=deadline - held_from)
            finally:
                for task in (talking, dropped):
                    task.cancel()
                await asyncio.gather(talking, dropped, return_exceptions=True)
            if talking.done() and not talking.cancelled() and talking.exception():
                raise talking.exception()  # type: ignore[misc]
            self.result.held_s = time.monotonic() - held_from
            if self._dropped.is_set():
                self._fail(f"connection {self.pc.connectionState} after "
                           f"{self.result.held_s:.1f} s")  # fmt: skip
            else:
                self.result.outcome = CallOutcome.COMPLETED
        finally:
            await self._hang_up(http, location)

    async def _post_offer(self, http: aiohttp.ClientSession, sdp: str) -> str | None:
        url = f"{self.config.base_url}/calls"
        async with http.post(url, data=sdp, headers={"Content-Type": "application/sdp"}) as rsp:
            body = await rsp.text()
            self.result.http_status = rsp.status
            if rsp.status == 503:
                self.result.outcome = CallOutcome.REFUSED
                self.result.retry_after_s = _seconds(rsp.headers.get("Retry-After"))
                return None
            if rsp.status != 201:
                self._fail(f"HTTP {rsp.status}: {_error_code(body)}")
                return None
            location = rsp.headers.get("Location", "")
        await self.pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
        return location

    async def _hang_up(self, http: aiohttp.ClientSession, location: str) -> None:
        if not location:
            return
        url = f"{self.config.base_url}/calls/{location.rsplit('/', 1)[-1]}"
        try:
            async with asyncio.timeout(HANGUP_TIMEOUT_S):
                async with http.delete(url) as rsp:
                    await rsp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.debug("call %d: hang-up failed: %s", self.index, exc)

    async def _converse(self, deadline: float) -> None:
        """Prompt, answer, pause, repeat. With barge-in, each later prompt starts
        `barge_in_after_s` into the previous answer instead of after it."""
        config, monitor, result = self.config, self.monitor, self.result
        prompt_done = self.mic.play()
        while time.monotonic() < deadline:
            await prompt_done.wait()
            prompt_end = self.mic.prompt_ended_at
            assert prompt_end is not None
            onset = await monitor.wait_onset(prompt_end, config.reply_timeout_s)
            result.prompts += 1  # counted once resolved: a prompt cut off by hang-up is not
            if onset is None:
                result.unanswered += 1
                prompt_done = self.mic.play()
                continue
            result.reply_latency_s.append(onset - prompt_end)
            if config.barge_in_after_s is None:
                ended = await monitor.wait_silence(onset, MAX_ANSWER_S)
                self._note_transcript(prompt_end, onset)
                if ended is None:
                    continue
                await asyncio.sleep(config.pause_s)
                prompt_done = self.mic.play()
                continue
            await asyncio.sleep(max(0.0, onset + config.barge_in_after_s - time.monotonic()))
            self._note_transcript(prompt_end, onset)
            if not monitor.audible:
                result.barge_in_missed += 1
                await asyncio.sleep(config.pause_s)
                prompt_done = self.mic.play()
                continue
            prompt_done = self.mic.play()
            await self._measure_barge_in()

    async def _measure_barge_in(self) -> None:
        await self.mic.started.wait()  # the next packet out starts the barge-in
        barge_at = self.mic.prompt_started_at
        assert barge_at is not None
        silent = await self.monitor.wait_silence(barge_at, BARGE_IN_SILENCE_TIMEOUT_S)
        if silent is None:
            self.result.barge_in_not_silenced += 1
            return
        self.result.barge_in_to_silence_s.append(silent - barge_at)
        try:
            async with asyncio.timeout(BARGE_IN_SILENCE_TIMEOUT_S):
                while (message := self._first_message("interrupted", barge_at)) is None:
                    self._new_message.clear()
                    await self._new_message.wait()
            self.result.interrupted_delay_s.append(message - silent)
        except TimeoutError:
            pass

    def _note_transcript(self, prompt_end: float, onset: float) -> None:
        at = self._first_message("transcript", prompt_end, role="agent")
        if at is not None:
            self.result.transcript_delay_s.append(at - onset)

    def _first_message(self, kind: str, after: float, role: str = "") -> float | None:
        for at, message_type, message_role in self.messages:
            if at >= after and message_type == kind and (not role or role == message_role):
                return at
        return None

    def _on_track(self, track: MediaStreamTrack) -> None:
        receiver = next(
            (t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track), None
        )
        if receiver is None or track.kind != "audio":
            return
        try:
            tap_receiver(receiver, self.monitor)
        except Exception as exc:  # reported by run(): the tester cannot measure this call
            self._tap_error = exc

    def _on_connection_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._dropped.set()

    def _on_message(self, raw: str | bytes) -> None:
        at = time.monotonic()
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if isinstance(message, dict):
            self.messages.append((at, str(message.get("type", "")), str(message.get("role", ""))))
            self._new_message.set()

    def _fail(self, error: str) -> None:
        self.result.outcome = CallOutcome.FAILED
        self.result.error = error

    def _collect(self) -> None:
        m, r = self.monitor, self.result
        r.packets, r.lost_packets, r.decoded_packets = m.packets, m.lost, m.decoded
        r.frame_intervals, r.gaps, r.max_gap_s = m.intervals, m.gaps, m.max_gap_s
        r.send_restarts = self.mic.restarts
        if self.stalls is not None:
            r.tester_gaps = sum(self.stalls.explains(a, b, GAP_S) for a, b in m.gap_windows)
        if m.first_packet_at is not None:
            r.gap_log = [
                (round(a - m.first_packet_at, 3), round(b - a, 3))
                for a, b in m.gap_windows[:GAPS_IN_REPORT]
            ]


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _error_code(body: str) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return body[:80]
