"""The media seam without a network: pacing, frame layout, resampling, flush, drops.

Pins down:
- outbound audio is finished Opus packets (aiortc only packs them), stamped on the
  48 kHz RTP clock (+960 per packet), paced at real time on a monotonic clock;
- while idle, the cached silence packet (no encoding); it decodes to silence;
- agent audio keeps its duration (50 voiced packets per second) and its energy;
- `flush()` (barge-in): at most 2 frames of the old reply get out, then silence;
- the playout buffer is bounded; the oldest audio is dropped and counted;
- a stalled event loop re-anchors the clock instead of bursting the backlog;
- inbound 48 kHz stereo frames become 16 kHz mono PCM in 40 ms chunks.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from gateway.media_tracks import AgentAudioTrack, pump_caller_audio
from gateway.rtc.opus_encoder import silence_payload
from tests.support.fakes import agent_tone
from tests.support.peers import rms


def decoded_rms(packets: list[av.Packet[Any]]) -> list[float]:
    """Each packet's energy as the caller's decoder hears it (48 kHz stereo s16)."""
    decoder = av.CodecContext.create("libopus", "r")
    decoder.format, decoder.layout, decoder.sample_rate = "s16", "stereo", 48_000
    out = []
    for packet in packets:
        frames = decoder.decode(av.Packet(bytes(packet)))
        pcm = b"".join(bytes(f.planes[0])[: f.samples * 4] for f in frames)
        assert len(pcm) == 960 * 4  # 20 ms, whatever the encoder's input rate
        out.append(rms(pcm))
    return out


async def test_packets_are_paced_stamped_and_cached_silence_when_idle() -> None:
    track = AgentAudioTrack()
    start = time.monotonic()
    packets = [await track.recv() for _ in range(26)]
    elapsed = time.monotonic() - start
    assert 0.45 <= elapsed <= 0.7  # 25 intervals of 20 ms after the first packet
    for i, packet in enumerate(packets):
        assert isinstance(packet, av.Packet)  # aiortc packs it: no encoder, no level loop
        assert packet.pts == 960 * i  # the 48 kHz RTP clock
        assert packet.time_base == fractions.Fraction(1, 48_000)
        assert bytes(packet) == silence_payload()  # nothing encoded while quiet
    assert all(level < 5 for level in decoded_rms(packets))  # -80 dBFS: digital silence
    assert track.stats.frames_sent == 26
    assert track.stats.audio_frames_sent == 0
    track.stop()


async def test_agent_audio_keeps_its_duration_and_energy() -> None:
    track = AgentAudioTrack()
    track.push(agent_tone(1.0))  # 440 Hz, amplitude 8000: RMS 5657
    assert abs(track.buffered_s - 1.0) < 0.001
    levels = decoded_rms([await track.recv() for _ in range(60)])
    voiced = [level for level in levels if level > 1000]
    assert 49 <= len(voiced) <= 51  # 1 s of 20 ms packets, the encoder's tail included
    assert 0.85 * 5657 <= float(np.median(voiced)) <= 1.15 * 5657
    assert all(level < 50 for level in levels[52:])  # then silence
    assert track.stats.audio_frames_sent == 50
    track.stop()


async def test_flush_lets_at_most_two_frames_of_the_old_reply_out() -> None:
    track = AgentAudioTrack()
    track.push(agent_tone(5.0))
    packets = [await track.recv() for _ in range(10)]
    track.flush()
    assert track.buffered_s == 0
    packets += [await track.recv() for _ in range(10)]
    levels = decoded_rms(packets)
    assert all(level > 1000 for level in levels[:10])
    assert sum(level > 50 for level in levels[10:]) <= 1  # no tail of the old reply
    assert all(level < 50 for level in levels[11:])
    assert track.stats.flushed_bytes > 4.5 * 24_000 * 2
    track.stop()


async def test_playout_buffer_is_bounded_and_drops_are_counted() -> None:
    track = AgentAudioTrack(max_playout_s=0.5)
    track.push(agent_tone(0.4))
    track.push(agent_tone(0.4))
    assert abs(track.buffered_s - 0.5) < 0.001
    assert track.stats.dropped_bytes == round(0.3 * 24_000) * 2
    track.stop()


async def test_a_stalled_loop_reanchors_the_clock_instead_of_bursting() -> None:
    track = AgentAudioTrack()
    await track.recv()
    time.sleep(0.3)  # noqa: ASYNC251 - the event loop stalls for longer than MAX_LAG_S
    await track.recv()  # late: sent at once, and the clock restarts from now
    start = time.monotonic()
    stamps = [(await track.recv()).pts for _ in range(5)]
    assert time.monotonic() - start >= 0.08  # paced again, not a burst of the backlog
    assert track.stats.clock_resets == 1
    assert stamps == [960 * i for i in range(2, 7)]  # RTP time stays continuous
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
    assert {len(c) for c in chunks} == {1280}
    total_s = sum(len(c) for c in chunks) / 2 / 16_000
    assert 0.95 <= total_s <= 1.0
    assert rms(b"".join(chunks[5:])) > 3000  # the tone survives resampling


async def test_each_caller_frame_reaches_the_agent_as_it_arrives() -> None:
    """No frame waits for the next: the resampler's start-up delay does not shift chunks."""
    chunks: list[bytes] = []
    track = StereoSourceTrack(10)
    frames_when_chunked: list[int] = []

    def sink(chunk: bytes) -> None:
        chunks.append(chunk)
        frames_when_chunked.append(10 - track.left)

    await pump_caller_audio(track, sink)
    assert frames_when_chunked == [2, 4, 6, 8, 10]  # chunk n right after frame 2n
    assert {len(c) for c in chunks} == {1280}


async def test_a_reply_is_loud_from_its_first_packet() -> None:
    """On a new call and after a barge-in, the reply's first 20 ms are not lost to a
    cold encoder (CELT's first frame has no energy history)."""
    track = AgentAudioTrack()
    packets = [await track.recv() for _ in range(3)]  # cached silence, encoder idle
    track.push(agent_tone(0.1))
    packets += [await track.recv() for _ in range(2)]
    track.flush()  # barge-in: a fresh encoder
    track.push(agent_tone(0.1))
    packets += [await track.recv() for _ in range(2)]
    levels = decoded_rms(packets)
    assert all(level < 50 for level in levels[:3])
    # The decoder lags ~6.5 ms, so the first packet carries ~2/3 of the tone's energy.
    assert levels[3] > 2500
    assert levels[5] > 2500
    track.stop()
