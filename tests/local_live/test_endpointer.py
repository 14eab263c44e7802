"""The endpointer on synthetic audio and on espeak-ng speech.

Pins down:
- silence, quiet noise and a short click never start speech;
- a voiced burst gives SpeechStarted (with its onset in the pre-roll), audio, then
  exactly one TurnEnded, `hangover_s` after the burst (to the frame);
- a pause shorter than the hangover stays inside the turn;
- results do not depend on how the audio is chunked;
- espeak-ng's "what time is it now" is one turn of about its own length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gateway.audio.formats import AGENT_INPUT_RATE_HZ
from gateway.models.local_live.endpointer import (
    FRAME_S,
    Endpointer,
    EndpointerConfig,
    EndpointEvent,
    SpeechAudio,
    SpeechStarted,
    TurnEnded,
)
from tests.support.speech import recording

RATE = AGENT_INPUT_RATE_HZ


def silence(seconds: float) -> bytes:
    return bytes(int(seconds * RATE) * 2)


def voiced(seconds: float, f0_hz: float = 140.0, amplitude: float = 6000.0) -> bytes:
    """A vowel-like burst: a fundamental with decaying harmonics."""
    t = np.arange(int(seconds * RATE)) / RATE
    wave = sum(np.sin(2 * np.pi * f0_hz * k * t) / k for k in range(1, 25))
    pcm: bytes = (amplitude * wave / np.max(np.abs(wave))).astype("<i2").tobytes()
    return pcm


def noise(seconds: float, rms: float) -> bytes:
    rng = np.random.default_rng(7)
    return rng.normal(0, rms, int(seconds * RATE)).astype("<i2").tobytes()


def feed_all(
    endpointer: Endpointer, pcm: bytes, chunk: int = 640
) -> list[tuple[float, EndpointEvent]]:
    """Events with the audio time (s) at which the chunk producing them ended."""
    out: list[tuple[float, EndpointEvent]] = []
    for offset in range(0, len(pcm), chunk):
        piece = pcm[offset : offset + chunk]
        at = (offset + len(piece)) / (2 * RATE)
        out += [(at, event) for event in endpointer.feed(piece)]
    return out


def kinds(events: list[tuple[float, EndpointEvent]]) -> list[str]:
    names = [type(e).__name__ for _, e in events]
    return [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]


def test_silence_quiet_noise_and_clicks_are_not_speech() -> None:
    endpointer = Endpointer()
    audio = silence(0.5) + noise(0.5, rms=60) + voiced(0.05) + silence(0.5) + voiced(0.06)
    assert feed_all(endpointer, audio) == []
    assert not endpointer.in_speech


def test_burst_is_one_turn_ending_after_the_hangover() -> None:
    config = EndpointerConfig(hangover_s=0.3)
    events = feed_all(Endpointer(config), silence(0.6) + voiced(0.6) + silence(1.0))
    assert kinds(events) == ["SpeechStarted", "SpeechAudio", "TurnEnded"]
    started_at, started = events[0]
    assert isinstance(started, SpeechStarted)
    assert 0.6 < started_at <= 0.6 + config.start_s + 2 * FRAME_S
    # The pre-roll reaches back before the onset: its first frames are silent.
    assert started.pcm[:960] == bytes(960)
    ended_at, ended = events[-1]
    assert isinstance(ended, TurnEnded)
    assert 1.2 + 0.3 - FRAME_S <= ended_at <= 1.2 + 0.3 + 2 * FRAME_S
    assert abs(ended.speech_s - 0.6) <= 0.1


def test_short_pause_stays_inside_the_turn() -> None:
    audio = silence(0.3) + voiced(0.3) + silence(0.15) + voiced(0.3) + silence(0.6)
    events = feed_all(Endpointer(EndpointerConfig(hangover_s=0.3)), audio)
    assert [type(e) for _, e in events].count(TurnEnded) == 1
    assert kinds(events) == ["SpeechStarted", "SpeechAudio", "TurnEnded"]


def test_chunking_does_not_change_the_result() -> None:
    audio = silence(0.4) + voiced(0.5) + silence(0.5) + voiced(0.4) + silence(0.5)
    for chunk in (2, 322, 960, 4800):
        events = feed_all(Endpointer(), audio, chunk)
        assert [type(e) for _, e in events].count(TurnEnded) == 2, chunk
        audio_out = b"".join(e.pcm for _, e in events if isinstance(e, SpeechStarted | SpeechAudio))
        assert len(audio_out) % 960 == 0


def test_espeak_question_is_one_turn(tmp_path: Path) -> None:
    speech = recording(tmp_path, "what time is it now")
    events = feed_all(Endpointer(), silence(0.5) + speech + silence(0.8))
    assert kinds(events) == ["SpeechStarted", "SpeechAudio", "TurnEnded"]
    ended = events[-1][1]
    assert isinstance(ended, TurnEnded)
    assert 0.8 <= ended.speech_s <= len(speech) / (2 * RATE) + 0.1
