"""What a load-test caller sends: pre-encoded Opus packets, paced in real time.

aiortc's `RTCRtpSender` packs an `av.Packet` returned by the track without encoding
it (`_next_encoded_frame`: "Pack the pre-encoded data"), and computes no audio level
for it. So a caller costs the tester only packetizing and SRTP, never Opus encoding.
The track sets the pace: frame n is due at start + n * 20 ms on the monotonic clock.

Imports aiortc and PyAV.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.loadtest.prompt import FRAME_S, FRAME_SAMPLES, RATE_HZ, EncodedPrompt

TIME_BASE = fractions.Fraction(1, RATE_HZ)
#: Behind schedule by more than this (the tester's loop stalled), the clock restarts
#: instead of sending a burst to catch up: a real phone would not burst either.
MAX_LAG_S = 0.2


class PromptTrack(MediaStreamTrack):
    """Sends queued prompt payloads, silence payloads when idle."""

    kind = "audio"

    def __init__(self, prompt: EncodedPrompt) -> None:
        super().__init__()
        self._prompt = prompt
        self._queue: deque[bytes] = deque()
        self._start: float | None = None
        self._index = 0
        self._pts = 0
        self._done: asyncio.Event | None = None
        self.started = asyncio.Event()
        """Set when the first packet of the current prompt is handed to aiortc."""
        self.prompt_started_at: float | None = None
        """Monotonic time the first packet of the current prompt was handed to aiortc."""
        self.prompt_ended_at: float | None = None
        """Monotonic time the current prompt's audio ended (last packet sent + 20 ms)."""
        self.restarts = 0
        """Times the pacing clock restarted because the tester fell behind."""

    def play(self) -> asyncio.Event:
        """Queue the prompt once; the returned event is set when its last packet is out."""
        self._queue.extend(self._prompt.payloads)
        self.prompt_started_at = self.prompt_ended_at = None
        self.started.clear()
        self._done = asyncio.Event()
        return self._done

    @property
    def playing(self) -> bool:
        return bool(self._queue)

    async def recv(self) -> av.Packet:  # type: ignore[type-arg]
        if self.readyState != "live":
            raise MediaStreamError
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
        if self._queue:
            payload = self._queue.popleft()
            if self.prompt_started_at is None:
                self.prompt_started_at = now
                self.started.set()
            if not self._queue:
                self.prompt_ended_at = now + FRAME_S
                if self._done is not None:
                    self._done.set()
        else:
            payload = self._prompt.silence
        packet = av.Packet(payload)
        packet.pts = self._pts
        packet.time_base = TIME_BASE
        self._pts += FRAME_SAMPLES
        return packet
