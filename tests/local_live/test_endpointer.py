"""The Silero VAD endpointer on espeak-ng speech, silence and noise.

Pins down:
- silence, pink noise (loud or soft), white noise and a click never start speech;
- espeak-ng's "what time is it now" is one turn: SpeechStarted (its pre-roll reaching
  back into the silence before the onset), audio, then exactly one TurnEnded about
  `hangover_s` after the last speech sample, with about the speech's length;
- the same for quiet speech (-25 dB) and for speech under pink noise at 10 dB SNR;
- the hangover is the knob: a pause shorter than it stays inside the turn, a longer
  one ends it, and a longer hangover ends the turn later by the difference;
- `SpeechPaused` marks the start of each quiet run inside a turn: the last one comes
  exactly `hangover_s` (to the frame) before `TurnEnded`;
- results do not depend on how the audio is chunked.
"""

from __future__ import annotations

import numpy as np
import pytest

from gateway.audio.formats import AGENT_INPUT_RATE_HZ
from gateway.models.local_live.endpointer import (
    FRAME_BYTES,
    FRAME_S,
    Endpointer,
    EndpointerConfig,
    EndpointEvent,
    SpeechAudio,
    SpeechPaused,
    SpeechStarted,
    TurnEnded,
)
from tests.support.conditions import gain_db, pink_noise, with_pink_noise
from tests.support.speech import recording

RATE = AGENT_INPUT_RATE_HZ


def silence(seconds: float) -> bytes:
    return bytes(int(seconds * RATE) * 2)


def pink(seconds: float, rms: float) -> bytes:
    return np.round(pink_noise(int(seconds * RATE), rms)).astype("<i2").tobytes()


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
    """Event kinds in order, repeats merged, pauses left out (see the hangover test)."""
    names = [type(e).__name__ for _, e in events if not isinstance(e, SpeechPaused)]
    return [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]


def speech_span_s(pcm: bytes) -> tuple[float, float]:
    """First and last sample louder than 1 % of full scale, in seconds."""
    loud = np.flatnonzero(np.abs(np.frombuffer(pcm, dtype="<i2")) > 327)
    return loud[0] / RATE, (loud[-1] + 1) / RATE


@pytest.fixture(scope="module")
def question(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return recording(tmp_path_factory.mktemp("speech"), "what time is it now")


def test_silence_noise_and_a_click_are_not_speech() -> None:
    rng = np.random.default_rng(7)
    click = (np.hanning(160) * 20_000).astype("<i2").tobytes()
    audio = (
        silence(0.5)
        + pink(3.0, 3000)  # -20 dBFS
        + pink(2.0, 300)
        + rng.normal(0, 1000, RATE).astype("<i2").tobytes()
        + silence(0.3)
        + click
        + silence(0.5)
    )
    endpointer = Endpointer()
    assert feed_all(endpointer, audio) == []
    assert not endpointer.in_speech


@pytest.mark.parametrize("condition", ["clean", "-25 dB", "pink noise 10 dB SNR"])
def test_question_is_one_turn_ending_a_hangover_after_the_speech(
    question: bytes, condition: str
) -> None:
    config = EndpointerConfig(hangover_s=0.3)
    audio = silence(0.5) + question + silence(1.0)
    first_s, last_s = speech_span_s(audio)
    if condition == "-25 dB":
        audio = gain_db(audio, -25)
    elif condition != "clean":
        audio = with_pink_noise(audio, 10)
    events = feed_all(Endpointer(config), audio)
    assert kinds(events) == ["SpeechStarted", "SpeechAudio", "TurnEnded"]
    started_at, started = events[0]
    assert isinstance(started, SpeechStarted)
    assert first_s < started_at <= first_s + 0.3
    if condition != "pink noise 10 dB SNR":
        assert started.pcm[:FRAME_BYTES] == bytes(FRAME_BYTES)  # pre-roll: the quiet before
    ended_at, ended = events[-1]
    assert isinstance(ended, TurnEnded)
    # Silero's probability decays over 2-3 frames after the last sample (hysteresis).
    assert last_s + 0.3 - 3 * FRAME_S <= ended_at <= last_s + 0.3 + 5 * FRAME_S
    assert abs(ended.speech_s - (last_s - first_s)) <= 0.25


def test_hangover_is_the_knob(question: bytes) -> None:
    pause = silence(0.25)
    audio = silence(0.3) + question + pause + question + silence(1.5)
    long_wait = feed_all(Endpointer(EndpointerConfig(hangover_s=0.6)), audio)
    short_wait = feed_all(Endpointer(EndpointerConfig(hangover_s=0.15)), audio)
    assert [type(e) for _, e in long_wait].count(TurnEnded) == 1  # the pause is inside
    assert [type(e) for _, e in short_wait].count(TurnEnded) == 2  # the pause ends a turn
    for events, hangover_s in ((long_wait, 0.6), (short_wait, 0.15)):
        for i, (at, event) in enumerate(events):
            if isinstance(event, TurnEnded):
                paused_at = next(a for a, e in reversed(events[:i]) if isinstance(e, SpeechPaused))
                assert abs((at - paused_at) - hangover_s) <= FRAME_S
    long_end = next(at for at, e in long_wait if isinstance(e, TurnEnded))
    short_end = [at for at, e in short_wait if isinstance(e, TurnEnded)][-1]
    assert abs((long_end - short_end) - 0.45) <= 2 * FRAME_S


def test_chunking_does_not_change_the_result(question: bytes) -> None:
    audio = silence(0.4) + question + silence(0.6) + question + silence(0.6)
    results = []
    for chunk in (2, 322, 1024, 4800):
        events = feed_all(Endpointer(), audio, chunk)
        assert [type(e) for _, e in events].count(TurnEnded) == 2, chunk
        audio_out = b"".join(e.pcm for _, e in events if isinstance(e, SpeechStarted | SpeechAudio))
        assert len(audio_out) % FRAME_BYTES == 0
        results.append([e for _, e in events if isinstance(e, TurnEnded)])
    assert all(r == results[0] for r in results)


def test_barge_in_and_turns_share_the_vad_state_reset(question: bytes) -> None:
    endpointer = Endpointer()
    events = [e for _, e in feed_all(endpointer, silence(0.3) + question[: len(question) // 2])]
    assert isinstance(events[0], SpeechStarted)
    assert endpointer.in_speech
    endpointer.reset()
    assert not endpointer.in_speech
    again = [e for _, e in feed_all(endpointer, silence(0.3) + question + silence(0.8))]
    assert [type(e) for e in again].count(SpeechStarted) == 1
    assert isinstance(again[-1], TurnEnded)
    assert not any(isinstance(e, SpeechAudio) for e in again[:1])
