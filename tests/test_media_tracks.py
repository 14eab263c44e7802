"""The media seam without a network: pacing, frame layout, resampling, flush, drops.

Pins down:
- outbound frames are fresh, tight 20 ms 48 kHz mono s16 frames (1920-byte planes),
  with pts advancing 960 per frame, paced at real time on a monotonic clock;
- silence when idle; agent audio resampled 24 -> 48 kHz keeps its duration;
- `flush()` (barge-in) drops all queued audio: the very next frame is silent;
- the playout buffer is bounded; the oldest audio is dropped and counted;
- inbound 48 kHz stereo frames become 16 kHz mono PCM in 20 ms chunks.
"""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from gateway.media_tracks import AgentAudioTrack, pump_caller_audio
from tests.fakes import agent_tone
from tests.peers import rms


async def test_frames_are_tight_paced_and_silent_when_idle() -> None:
    track = AgentAudioTrack()
    start = time.monotonic()
    frames = [await track.recv() for _ in range(26)]
    elapsed = time.monotonic() - start
    assert 0.45 <= elapsed <= 0.7  # 25 intervals of 20 ms after the first frame
    for i, frame in enumerate(frames):
        assert (frame.samples, frame.sample_rate, frame.format.name, frame.layout.name) == (
            960,
            48_000,
            "s16",
            "mono",
        )
        assert frame.planes[0].buffer_size == 1920
        assert frame.pts == 960 * i
        assert frame.time_base == fractions.Fraction(1, 48_000)
    assert all(rms(bytes(f.planes[0])) == 0 for f in frames)
    track.stop()


async def test_agent_audio_keeps_its_duration_and_flush_cuts_it() -> None:
    track = AgentAudioTrack()
    track.push(agent_tone(1.0))
    assert abs(track.buffered_s - 1.0) < 0.01
    voiced = [rms(bytes((await track.recv()).planes[0])) > 1000 for _ in range(10)]
    assert all(voiced)
    track.flush()
    assert track.buffered_s == 0
    assert rms(bytes((await track.recv()).planes[0])) == 0  # no frame of the old reply
    assert track.stats.flushed_bytes > 0
    track.stop()


async def test_playout_buffer_is_bounded_and_drops_are_counted() -> None:
    track = AgentAudioTrack(max_playout_s=0.5)
    track.push(agent_tone(0.4))
    track.push(agent_tone(0.4))
    assert abs(track.buffered_s - 0.5) < 0.001
    assert track.stats.dropped_bytes > 0.29 * 48_000 * 2
    track.stop()


class StereoSourceTrack(MediaStreamTrack):
    """Decoded-caller-like frames: 48 kHz stereo s16, 20 ms each, then the end."""

    kind = "audio"

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.left = frames

    async def recv(self) -> av.AudioFrame:
        if self.left == 0:
            raise MediaStreamError
        self.left -= 1
        t = np.arange(960) / 48_000
        mono = (6000 * np.sin(2 * np.pi * 300 * t)).astype("<i2")
        frame = av.AudioFrame.from_ndarray(
            np.repeat(mono, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = 48_000
        await asyncio.sleep(0)
        return frame


async def test_caller_audio_becomes_16k_mono_chunks() -> None:
    chunks: list[bytes] = []
    frames = await pump_caller_audio(StereoSourceTrack(50), chunks.append)
    assert frames == 50
    assert {len(c) for c in chunks} == {640}
    total_s = sum(len(c) for c in chunks) / 2 / 16_000
    assert 0.95 <= total_s <= 1.0
    assert rms(b"".join(chunks[5:])) > 3000  # the tone survives resampling
