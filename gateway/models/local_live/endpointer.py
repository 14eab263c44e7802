"""Voice activity and end of turn on the caller's 16 kHz mono s16 PCM.

A 30 ms frame is voiced when it is loud enough (`min_rms`) *and* pocketsphinx's
WebRTC-derived VAD, in its strictest mode, calls it speech: the VAD alone calls
quiet noise speech, and energy alone calls any hum speech. Speech starts after
`start_s` of voiced frames (the frames before it, up to `pre_roll_s`, are handed
over too, so the recognizer hears the onset); the turn ends after `hangover_s`
without a voiced frame.

Pure computation, no I/O and no asyncio: imports numpy, pocketsphinx and
`gateway.audio.formats` only.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from pocketsphinx import Vad

from gateway.audio.formats import AGENT_INPUT_RATE_HZ, SAMPLE_BYTES

#: The VAD's frame: 30 ms at 16 kHz (480 samples).
FRAME_S = 0.03
FRAME_BYTES = round(AGENT_INPUT_RATE_HZ * FRAME_S) * SAMPLE_BYTES


@dataclass(frozen=True, slots=True)
class EndpointerConfig:
    """Tuning of the endpointer; the defaults suit close-talking speech."""

    #: Quiet after the last voiced frame that ends the caller's turn.
    hangover_s: float = 0.2
    #: Voiced audio needed before speech is declared (short clicks are ignored).
    start_s: float = 0.09
    #: Audio before the declared start that is handed to the recognizer.
    pre_roll_s: float = 0.3
    #: Frames quieter than this RMS (s16 units; 300 is about -40 dBFS) are never voiced.
    min_rms: float = 300.0
    #: pocketsphinx VAD aggressiveness, 0 (loose) to 3 (strict).
    vad_mode: int = 3


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The caller started speaking; `pcm` is the audio since just before the onset."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    """More audio of the current utterance (voiced or a pause inside it)."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class TurnEnded:
    """The caller stopped speaking `hangover_s` ago; `speech_s` is the utterance length."""

    speech_s: float


EndpointEvent = SpeechStarted | SpeechAudio | TurnEnded


def frame_rms(frame: bytes) -> float:
    """Root mean square of s16 samples (0 for an empty frame)."""
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
    return float(np.sqrt(np.mean(samples * samples))) if len(samples) else 0.0


class Endpointer:
    """Feeds on PCM of any chunk size; returns what happened, in order."""

    def __init__(self, config: EndpointerConfig | None = None) -> None:
        self.config = config or EndpointerConfig()
        self._vad = Vad(self.config.vad_mode, AGENT_INPUT_RATE_HZ, FRAME_S)
        assert self._vad.frame_bytes == FRAME_BYTES
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

    def is_voiced(self, frame: bytes) -> bool:
        """One 30 ms frame: loud enough and speech-like."""
        return frame_rms(frame) >= self.config.min_rms and bool(self._vad.is_speech(frame))

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


def _merge_audio(events: list[EndpointEvent]) -> list[EndpointEvent]:
    """Adjacent `SpeechAudio` events become one (fewer hops to the recognizer)."""
    merged: list[EndpointEvent] = []
    for event in events:
        if isinstance(event, SpeechAudio) and merged and isinstance(merged[-1], SpeechAudio):
            merged[-1] = SpeechAudio(merged[-1].pcm + event.pcm)
        else:
            merged.append(event)
    return merged
