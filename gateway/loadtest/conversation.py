"""One load-test call: offer, answer, talk in turns for the hold time, hang up.

The caller (a `HeadlessCaller` listening per packet) speaks the prompt, waits for
the agent's audio, waits for it to end (or, with barge-in, speaks again partway
into it), pauses, and repeats until the call's hold time is over. A call whose
gateway dies (no RTP for `media_timeout_s`, or the connection failed) ends there,
failed, with the time its media stopped and the silence that followed. Everything it
measures lands in a `CallResult`.

Imports aiohttp and the load tester's own modules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import aiohttp
from aiortc import RTCSessionDescription

from gateway.loadtest.config import LoadTestConfig
from gateway.loadtest.headless_caller import HeadlessCaller
from gateway.loadtest.listener import GAP_S, AgentAudioMonitor
from gateway.loadtest.prompt import EncodedPrompt
from gateway.loadtest.results import CallOutcome, CallResult
from gateway.loadtest.source_track import PacedSourceTrack
from gateway.loadtest.stalls import LoopStalls

logger = logging.getLogger(__name__)

#: How long a barge-in waits for the agent's audio to stop before giving up.
BARGE_IN_SILENCE_TIMEOUT_S = 2.0
#: An answer longer than this is cut off by the caller's next prompt anyway.
MAX_ANSWER_S = 30.0
#: Gaps listed (time, length) per call in the report; all are counted.
GAPS_IN_REPORT = 20


@dataclass
class LoadTestCall:
    """A call in progress: its caller and its measurements."""

    index: int
    config: LoadTestConfig
    prompt: EncodedPrompt
    stalls: LoopStalls | None = None
    """This process's event-loop stalls, to tell the tester's gaps from the server's."""
    result: CallResult = field(init=False)
    monitor: AgentAudioMonitor = field(init=False)
    mic: PacedSourceTrack = field(init=False)

    def __post_init__(self) -> None:
        self.result = CallResult(index=self.index)
        self.monitor = AgentAudioMonitor(self.config.energy_threshold)
        self.mic = PacedSourceTrack(self.prompt.silence)

    async def run(self, http: aiohttp.ClientSession) -> CallResult:
        caller: HeadlessCaller | None = None
        try:
            # Made here, not earlier: a receiver that cannot be tapped fails this call.
            caller = HeadlessCaller(mic=self.mic, packet_listener=self.monitor.on_packet)
            await self._run(http, caller)
        except Exception as exc:  # a boundary: one call's failure must not end the test
            self._fail(f"{type(exc).__name__}: {exc}")
            logger.debug("call %d failed", self.index, exc_info=True)
        finally:
            if caller is not None:
                await caller.close()
            self.mic.stop()
            self._collect()
        return self.result

    async def _run(self, http: aiohttp.ClientSession, caller: HeadlessCaller) -> None:
        started = time.monotonic()
        posted = time.monotonic()
        dialed = await caller.dial(http, self.config.base_url)
        self.result.http_status = dialed.status
        if dialed.status == 503:
            self.result.outcome = CallOutcome.REFUSED
            self.result.retry_after_s = dialed.retry_after_s
            return
        if dialed.status != 201:
            self._fail(f"HTTP {dialed.status}: {dialed.error_code()}")
            return
        self.result.answer_s = time.monotonic() - posted
        try:
            first = await self.monitor.wait_first_packet(self.config.connect_timeout_s)
            if first is None:
                self._fail(
                    f"no media within {self.config.connect_timeout_s:g} s" + _ice_diagnosis(caller)
                )
                return
            self.result.connect_s = first - started
            held_from = time.monotonic()
            deadline = held_from + self.config.duration_s
            talking = asyncio.ensure_future(self._converse(caller, deadline))
            dropped = asyncio.ensure_future(caller.dropped.wait())
            silent = asyncio.ensure_future(caller.wait_media_lost(self.config.media_timeout_s))
            watched = (talking, dropped, silent)
            try:
                # The first to finish: a call that dies early ends here, not at the deadline.
                await asyncio.wait(
                    watched, timeout=deadline - held_from, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in watched:
                    task.cancel()
                await asyncio.gather(*watched, return_exceptions=True)
            if talking.done() and not talking.cancelled() and talking.exception():
                raise talking.exception()  # type: ignore[misc]
            now = time.monotonic()
            self.result.held_s = now - held_from
            if caller.dropped.is_set() or (silent.done() and not silent.cancelled()):
                self._lost(caller, held_from, now)
            else:
                self.result.outcome = CallOutcome.COMPLETED
        finally:
            await caller.hang_up(http, self.config.base_url)

    async def _converse(self, caller: HeadlessCaller, deadline: float) -> None:
        """Prompt, answer, pause, repeat. With barge-in, each later prompt starts
        `barge_in_after_s` into the previous answer instead of after it."""
        config, monitor, result = self.config, self.monitor, self.result
        prompt_done = self.mic.play(self.prompt.payloads)
        while time.monotonic() < deadline:
            await prompt_done.wait()
            prompt_end = self.mic.ended_at
            assert prompt_end is not None
            onset = await monitor.wait_onset(prompt_end, config.reply_timeout_s)
            result.prompts += 1  # counted once resolved: a prompt cut off by hang-up is not
            if onset is None:
                result.unanswered += 1
                prompt_done = self.mic.play(self.prompt.payloads)
                continue
            result.reply_latency_s.append(onset - prompt_end)
            if config.barge_in_after_s is None:
                ended = await monitor.wait_silence(onset, MAX_ANSWER_S)
                self._note_transcript(caller, prompt_end, onset)
                if ended is None:
                    continue
                await asyncio.sleep(config.pause_s)
                prompt_done = self.mic.play(self.prompt.payloads)
                continue
            await asyncio.sleep(max(0.0, onset + config.barge_in_after_s - time.monotonic()))
            self._note_transcript(caller, prompt_end, onset)
            if not monitor.audible:
                result.barge_in_missed += 1
                await asyncio.sleep(config.pause_s)
                prompt_done = self.mic.play(self.prompt.payloads)
                continue
            prompt_done = self.mic.play(self.prompt.payloads)
            await self._measure_barge_in(caller)

    async def _measure_barge_in(self, caller: HeadlessCaller) -> None:
        await self.mic.started.wait()  # the next packet out starts the barge-in
        barge_at = self.mic.started_at
        assert barge_at is not None
        silent = await self.monitor.wait_silence(barge_at, BARGE_IN_SILENCE_TIMEOUT_S)
        if silent is None:
            self.result.barge_in_not_silenced += 1
            return
        self.result.barge_in_to_silence_s.append(silent - barge_at)
        message = await caller.wait_message_after(
            barge_at, BARGE_IN_SILENCE_TIMEOUT_S, type="interrupted"
        )
        if message is not None:
            self.result.interrupted_delay_s.append(message - silent)

    def _note_transcript(self, caller: HeadlessCaller, prompt_end: float, onset: float) -> None:
        at = caller.message_after(prompt_end, type="transcript", role="agent")
        if at is not None:
            self.result.transcript_delay_s.append(at - onset)

    def _lost(self, caller: HeadlessCaller, held_from: float, now: float) -> None:
        """The call died before its hold time: say when its media stopped and how long
        the caller then heard nothing before it noticed (the gap)."""
        last = caller.last_media_at if caller.last_media_at is not None else held_from
        r = self.result
        r.lost_at_s = max(0.0, last - held_from)
        r.lost_gap_s = now - last
        self._fail(f"media stopped {r.lost_at_s:.1f} s into the call, then nothing for "
                   f"{r.lost_gap_s:.1f} s (connection {caller.pc.connectionState})")  # fmt: skip

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


def _ice_diagnosis(caller: HeadlessCaller) -> str:
    """Why a call had no media, when ICE is the reason: which addresses each side
    offered, and what to change (the usual cause: no address both can reach)."""
    state = caller.pc.iceConnectionState
    if state in ("connected", "completed"):
        return ""
    ours = _candidate_addresses(caller.pc.localDescription)
    theirs = _candidate_addresses(caller.pc.remoteDescription)
    return (
        f": ICE {state} (this tester offered {ours or 'no candidates'}, the gateway "
        f"answered {theirs or 'no candidates'}); start the gateway with --ice-addresses "
        "including an address this machine reaches, or give the tester --ice-addresses"
    )


def _candidate_addresses(description: RTCSessionDescription | None) -> str:
    if description is None:
        return ""
    found = []
    for line in description.sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) >= 6:
                found.append(f"{parts[4]}:{parts[5]}")
    return ", ".join(dict.fromkeys(found))
