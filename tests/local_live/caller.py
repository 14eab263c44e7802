"""A headless aiortc caller that also keeps what it hears and when things happened.

Extends `tests.peers.CallerPeer`: the agent's audio is kept as 48 kHz mono PCM with
arrival times, data-channel messages get arrival times, and the microphone notes
when it sent each frame and how loud it was.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np

from tests.peers import CallerPeer, PcmPlayerTrack, ReceivedFrame, rms


class TimedPlayerTrack(PcmPlayerTrack):
    """The caller's microphone, noting (send time, RMS) of every 20 ms frame."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[float, float]] = []

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        pcm = bytes(frame.planes[0])[: frame.samples * 2]
        self.sent.append((time.monotonic(), rms(pcm)))
        return frame

    def last_voiced_at(self, threshold: float = 300.0) -> float | None:
        """When the last frame louder than `threshold` went out (its end)."""
        voiced = [at for at, level in self.sent if level >= threshold]
        return voiced[-1] + 0.02 if voiced else None


@dataclass
class ListeningCaller(CallerPeer):
    mic: PcmPlayerTrack = field(default_factory=TimedPlayerTrack)
    heard: list[tuple[float, bytes]] = field(default_factory=list)  # 48 kHz mono
    message_times: list[float] = field(default_factory=list)

    def _on_message(self, message: str | bytes) -> None:
        self.message_times.append(time.monotonic())
        super()._on_message(message)

    def _on_frame(self, frame: av.AudioFrame) -> None:
        channels = len(frame.layout.channels)
        pcm = bytes(frame.planes[0])[: frame.samples * 2 * channels]
        mono = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)[:, 0].tobytes()
        now = time.monotonic()
        self.heard.append((now, mono))
        self.frames.append(ReceivedFrame(now, rms(mono), frame.samples))

    def message_time(self, message: dict[str, Any]) -> float:
        """Arrival time of a message from `messages` (compared by identity)."""
        index = next(i for i, m in enumerate(self.messages) if m is message)
        return self.message_times[index]

    def audio_after(self, at: float) -> bytes:
        return b"".join(pcm for t, pcm in self.heard if t >= at)
