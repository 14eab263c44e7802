"""What a headless caller sends: Opus payloads, paced in real time (the one paced
source track of the load tester, the tests and the benchmarks).

aiortc's `RTCRtpSender` packs an `av.Packet` returned by the track without encoding
it (`_next_encoded_frame`: "Pack the pre-encoded data"), and computes no audio level
for it. So a caller costs only packetizing and SRTP: prompts are encoded once per
process (`prompt.encode_prompt`), other PCM once when it is queued (`play_pcm`).
The track sets the pace: frame n is due at start + n * 20 ms on the monotonic clock.
While nothing is queued it sends a silence payload (or loops a pattern, `loop`), so
RTP never stalls; with `end_when_drained` it ends instead, like a file played once.

Because the payloads are Opus, the track must be sent on an Opus-only transceiver:
`add_source_track` sets that up. Imports aiortc, PyAV and the load tester's encoder.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.audio.pcm import rms
from gateway.loadtest.prompt import (
    FRAME_BYTES,
    FRAME_S,
    FRAME_SAMPLES,
    RATE_HZ,
    OpusFrameEncoder,
    silence_payload,
)

TIME_BASE = fractions.Fraction(1, RATE_HZ)
#: PCM queued with `play_pcm` is encoded at aiortc's own Opus bit rate (96 kbit/s):
#: test signals (tones that change every frame) then arrive as they did when aiortc
#: encoded them; a prompt's speech-grade 32 kbit/s SILK smears such changes.
PCM_BIT_RATE = 96_000
#: Behind schedule by more than this (the sender's loop stalled), the clock restarts
#: instead of sending a burst to catch up: a real phone would not burst either.
MAX_LAG_S = 0.2


class PacedSourceTrack(MediaStreamTrack):
    """Sends queued Opus payloads every 20 ms; silence (or a looped pattern) when idle.

    `play` queues pre-encoded payloads, `play_pcm` 48 kHz mono s16 PCM (encoded here,
    once); each returns an event set when its last packet is out. With
    `keep_levels`, every frame sent is noted as (send time, RMS of its PCM) in
    `sent` (0 for pre-encoded payloads, whose PCM the track never saw).
    """

    kind = "audio"

    def __init__(
        self,
        silence: bytes | None = None,
        *,
        end_when_drained: bool = False,
        keep_levels: bool = False,
    ) -> None:
        super().__init__()
        self._silence = silence if silence is not None else silence_payload()
        self._end_when_drained = end_when_drained
        self._queue: deque[tuple[bytes, float]] = deque()
        self._pattern: tuple[bytes, ...] = ()
        self._pattern_index = 0
        self._encoder: OpusFrameEncoder | None = None
        self._tail_due = False
        self._start: float | None = None
        self._index = 0
        self._pts = 0
        self._done: asyncio.Event | None = None
        self._keep_levels = keep_levels
        self.started = asyncio.Event()
        """Set when the first packet of the current play is handed to aiortc."""
        self.started_at: float | None = None
        """Monotonic time the first packet of the current play was handed to aiortc."""
        self.ended_at: float | None = None
        """Monotonic time the current play's audio ended (last packet sent + 20 ms)."""
        self.finished = asyncio.Event()
        """Set when the track ended by itself (`end_when_drained`)."""
        self.restarts = 0
        """Times the pacing clock restarted because the sender fell behind."""
        self.sent: list[tuple[float, float]] = []
        """(send time, RMS) of every frame sent, with `keep_levels`."""

    def play(self, payloads: Sequence[bytes], levels: Sequence[float] = ()) -> asyncio.Event:
        """Queue pre-encoded 20 ms payloads; the event is set when the last one is out."""
        self._queue.extend(zip(payloads, levels or [0.0] * len(payloads), strict=True))
        self.started_at = self.ended_at = None
        self.started.clear()
        self._done = asyncio.Event()
        return self._done

    def play_pcm(self, pcm: bytes) -> asyncio.Event:
        """Queue 48 kHz mono s16 PCM (zero-padded to whole 20 ms frames)."""
        if self._encoder is None:
            self._encoder = OpusFrameEncoder(PCM_BIT_RATE)
        frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
        levels = [rms(frame) for frame in frames]
        payloads = self._encoder.encode(pcm)
        self._tail_due = True
        return self.play(payloads, levels)

    def loop(self, payloads: Sequence[bytes], phase: int = 0) -> None:
        """Send `payloads` over and over (from index `phase`) whenever nothing is queued."""
        self._pattern = tuple(payloads)
        self._pattern_index = phase % len(payloads) if payloads else 0

    @property
    def playing(self) -> bool:
        return bool(self._queue)

    def last_voiced_at(self, threshold: float = 300.0) -> float | None:
        """When the last frame louder than `threshold` went out, plus its 20 ms (its
        end); needs `keep_levels`."""
        voiced = [at for at, level in self.sent if level >= threshold]
        return voiced[-1] + FRAME_S if voiced else None

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if self._end_when_drained and not self._queue and self._start is not None:
            self.finished.set()
            self.stop()
            raise MediaStreamError
        now = await self._wait_for_next_frame()
        payload, level = self._next_payload(now)
        if self._keep_levels:
            self.sent.append((now, level))
        packet = av.Packet(payload)
        packet.pts = self._pts
        packet.time_base = TIME_BASE
        self._pts += FRAME_SAMPLES
        return packet

    async def _wait_for_next_frame(self) -> float:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._index * FRAME_S
        if due > now:
            await asyncio.sleep(due - now)
            now = time.monotonic()
        elif now - due > MAX_LAG_S:
            self._start, self._index = now, 0
            self.restarts += 1
        self._index += 1
        return now

    def _next_payload(self, now: float) -> tuple[bytes, float]:
        if self._queue:
            payload, level = self._queue.popleft()
            if self.started_at is None:
                self.started_at = now
                self.started.set()
            if not self._queue:
                self.ended_at = now + FRAME_S
                if self._done is not None:
                    self._done.set()
            return payload, level
        if self._tail_due and self._encoder is not None:
            # One quiet frame through the same encoder lets its look-ahead (the last
            # ~6.5 ms of what was played) out, as a microphone's next frame would.
            self._tail_due = False
            tail = self._encoder.encode(bytes(FRAME_BYTES))
            if tail:
                return tail[0], 0.0
        if self._pattern:
            payload = self._pattern[self._pattern_index]
            self._pattern_index = (self._pattern_index + 1) % len(self._pattern)
            return payload, 0.0
        return self._silence, 0.0


def add_source_track(
    pc: RTCPeerConnection, track: PacedSourceTrack, direction: str = "sendrecv"
) -> RTCRtpTransceiver:
    """Send `track` on a new audio transceiver that offers Opus only (its payloads
    are Opus: another codec would carry them as garbage)."""
    transceiver = pc.addTransceiver(track, direction=direction)
    opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.name.lower() == "opus"]
    transceiver.setCodecPreferences(opus)
    return transceiver
