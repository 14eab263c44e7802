"""The call's media: the caller's track in, the agent's paced track out.

Knows aiortc and PyAV (through `gateway.audio.pcm` and `gateway.rtc.opus_encoder`), not HTTP or
agents: audio goes out of here as 16 kHz PCM through a callback and comes in as
24 kHz PCM through `push`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from gateway.audio.formats import (
    AGENT_INPUT_RATE_HZ,
    AGENT_OUTPUT_RATE_HZ,
    PTIME_S,
    SAMPLE_BYTES,
    WEBRTC_RATE_HZ,
    samples_per_frame,
)
from gateway.audio.pcm import MonoResampler
from gateway.rtc.frame_clock import FrameClock
from gateway.rtc.opus_encoder import (
    INPUT_FRAME_BYTES,
    RTP_FRAME_TICKS,
    OpusSpeechEncoder,
    silence_payload,
    stamped,
)

logger = logging.getLogger(__name__)

#: Agent audio arrives in bursts faster than real time; a whole long reply must fit.
#: 120 s at 24 kHz mono s16 is 5.5 MiB; past it the oldest audio is dropped (counted).
MAX_PLAYOUT_S = 120.0
#: If the event loop stalls longer than this, re-anchor the clock instead of bursting
#: the backlog out (a burst only grows the receiver's jitter buffer).
MAX_LAG_S = 0.2
#: Real silence encoded after speech before switching to the cached silence packet:
#: lets the encoder's ~6.5 ms look-ahead (the reply's last samples) reach the caller.
TAIL_FRAMES = 1
#: Chunks to the agent: 40 ms of 16 kHz audio (the issue allows 20-40 ms). Half the
#: chunks of 20 ms halve ADK's per-chunk work (2.5-5 % less CPU per call, measured);
#: the price is ~10 ms of median uplink delay (every other frame waits for the next).
IN_CHUNK_BYTES = 2 * samples_per_frame(AGENT_INPUT_RATE_HZ) * SAMPLE_BYTES


@dataclass(slots=True)
class PlayoutStats:
    frames_sent: int = 0
    audio_frames_sent: int = 0
    dropped_bytes: int = 0
    flushed_bytes: int = 0
    clock_resets: int = 0


class AgentAudioTrack(MediaStreamTrack):
    """The audio the caller hears: agent PCM paced out as 20 ms Opus packets.

    aiortc pulls `recv()`; the track sets the pace on the loop's monotonic clock (one
    timer per 20 ms shared by all calls, `gateway.rtc.frame_clock`) and returns
    finished `av.Packet`s (see `gateway.rtc.opus_encoder`), which aiortc's sender packs into
    RTP without encoding. While the agent is quiet it sends a cached silence packet,
    so RTP never stalls and silence costs no encoding.
    """

    kind = "audio"

    def __init__(
        self, max_playout_s: float = MAX_PLAYOUT_S, clock: FrameClock | None = None
    ) -> None:
        super().__init__()
        self._clock = clock  # the running loop's shared clock unless given
        self._buffer = bytearray()  # agent PCM as it arrived: 24 kHz mono s16
        self._max_bytes = int(max_playout_s * AGENT_OUTPUT_RATE_HZ) * SAMPLE_BYTES
        self._encoder = OpusSpeechEncoder()
        self._silence = silence_payload()
        self._tail = 0
        self._start: float | None = None
        self._ticks = 0  # RTP clock (48 kHz) of the next packet
        self.stats = PlayoutStats()
        #: Told how long after a barge-in (`flush`) the first packet without the cut
        #: reply went out.
        self.on_barge_in_silence: Callable[[float], None] | None = None
        self._flushed_at: float | None = None

    @property
    def buffered_s(self) -> float:
        return len(self._buffer) / (SAMPLE_BYTES * AGENT_OUTPUT_RATE_HZ)

    def push(self, pcm: bytes) -> None:
        """Queue agent speech (24 kHz mono s16). Drops the oldest audio when full."""
        self._buffer += pcm[: len(pcm) - len(pcm) % SAMPLE_BYTES]
        excess = len(self._buffer) - self._max_bytes
        if excess > 0:
            del self._buffer[:excess]
            self.stats.dropped_bytes += excess
            logger.warning("playout buffer full: dropped %d bytes of agent audio", excess)

    def flush(self) -> None:
        """Barge-in: drop everything queued; the next packet out is silence."""
        self.stats.flushed_bytes += len(self._buffer)
        self._buffer.clear()
        # No tail frame: it would carry the encoder's look-ahead of the old reply
        # (-20 to -30 dB, one frame longer audible). A fresh encoder keeps the next
        # reply clean of it too.
        self._tail = 0
        self._encoder = OpusSpeechEncoder()
        self._flushed_at = time.monotonic()

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        await self._wait_for_next_frame()
        buffer = self._buffer
        if buffer:
            chunk = bytes(buffer[:INPUT_FRAME_BYTES])
            del buffer[:INPUT_FRAME_BYTES]
            if len(chunk) < INPUT_FRAME_BYTES:
                chunk = chunk.ljust(INPUT_FRAME_BYTES, b"\0")
            packet = self._encoder.encode(chunk)
            self._tail = TAIL_FRAMES
            self.stats.audio_frames_sent += 1
        elif self._tail:
            packet = self._encoder.encode(bytes(INPUT_FRAME_BYTES))
            self._tail -= 1
        else:
            packet = av.Packet(self._silence)
        if self._flushed_at is not None:  # the first packet without the cut reply
            if self.on_barge_in_silence is not None:
                self.on_barge_in_silence(time.monotonic() - self._flushed_at)
            self._flushed_at = None
        self.stats.frames_sent += 1
        stamped(packet, self._ticks)
        self._ticks += RTP_FRAME_TICKS
        return packet

    async def _wait_for_next_frame(self) -> None:
        clock = self._clock
        if clock is None:
            clock = self._clock = FrameClock.of_running_loop()
        now = clock.now()
        if self._start is None:
            self._start = clock.slot_start(now)
            return
        due = self._start + self._ticks / WEBRTC_RATE_HZ
        if now - due > MAX_LAG_S:
            # Keep RTP timestamps tracking wall time: skip ahead, don't burst.
            self._start = clock.slot_start(now) - self._ticks / WEBRTC_RATE_HZ
            self.stats.clock_resets += 1
            return
        if due > now:
            await clock.sleep_until(due)


async def pump_caller_audio(
    track: MediaStreamTrack, sink: Callable[[bytes], None], *, chunk_bytes: int = IN_CHUNK_BYTES
) -> int:
    """Read the caller's decoded track until it ends, handing `sink` 16 kHz mono PCM.

    Chunks are `chunk_bytes` (40 ms) as audio arrives. Returns the frames read.
    """
    resampler = MonoResampler(AGENT_INPUT_RATE_HZ)
    pending = bytearray()
    frames = 0
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return frames
        if not isinstance(frame, av.AudioFrame):
            continue
        frames += 1
        pcm = resampler.frame(frame)
        if frames == 1:
            # The resampler holds back its filter delay (304 of 320 samples come out
            # of the first 20 ms): pad it once, or every chunk would then wait for
            # the next frame, adding 20 ms to all of the call's uplink.
            due = frame.samples * AGENT_INPUT_RATE_HZ // frame.sample_rate * SAMPLE_BYTES
            pcm = bytes(max(0, due - len(pcm))) + pcm
        if not pending and len(pcm) == chunk_bytes:
            sink(pcm)  # frame-sized chunks: no copies
            continue
        pending += pcm
        while len(pending) >= chunk_bytes:
            sink(bytes(pending[:chunk_bytes]))
            del pending[:chunk_bytes]


__all__ = ["PTIME_S", "AgentAudioTrack", "PlayoutStats", "pump_caller_audio"]
