"""Audio helpers of the Live API double: a tone for the "model" and an energy VAD.

The double cannot recognise speech; it detects a caller turn by energy (speech then
silence) and answers with a tone, which tests measure by energy and duration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.audio.pcm import rms
from gateway.audio.pcm import tone as pcm_tone

#: What the real service expects from the client: 16 kHz mono s16le.
INPUT_RATE_HZ = 16_000
#: What the real service sends: 24 kHz mono s16le (`audio/pcm;rate=24000`).
OUTPUT_RATE_HZ = 24_000
OUTPUT_MIME = f"audio/pcm;rate={OUTPUT_RATE_HZ}"
_WINDOW_SAMPLES = INPUT_RATE_HZ // 50  # 20 ms


def tone(duration_s: float, freq_hz: float = 440.0, amplitude: int = 8000) -> bytes:
    """A sine tone as the service's 24 kHz mono s16le PCM."""
    return pcm_tone(duration_s, OUTPUT_RATE_HZ, freq_hz, amplitude)


@dataclass
class EnergyVad:
    """Finds caller turns in 16 kHz PCM: >= `min_speech_s` loud, then `end_silence_s` quiet.

    Returns the speech duration of each finished turn from `feed`.
    """

    threshold_rms: float = 400.0
    min_speech_s: float = 0.12
    end_silence_s: float = 0.4
    _pending: bytearray = field(default_factory=bytearray)
    _speech_s: float = 0.0
    _silence_s: float = 0.0

    def feed(self, pcm: bytes) -> list[float]:
        self._pending += pcm
        turns: list[float] = []
        window_bytes = _WINDOW_SAMPLES * 2
        while len(self._pending) >= window_bytes:
            window = bytes(self._pending[:window_bytes])
            del self._pending[:window_bytes]
            if rms(window) >= self.threshold_rms:
                self._speech_s += 0.02
                self._silence_s = 0.0
            elif self._speech_s > 0:
                self._silence_s += 0.02
                if self._silence_s >= self.end_silence_s:
                    if self._speech_s >= self.min_speech_s:
                        turns.append(round(self._speech_s, 2))
                    self._speech_s = self._silence_s = 0.0
        return turns


#: Marks a 20 ms caller chunk as stamped: its first samples are (magic, seq % 1000,
#: seq // 1000), quiet enough (RMS ~120) not to disturb the VAD.
_STAMP_MAGIC = 1963
_CHUNK_BYTES = _WINDOW_SAMPLES * 2


def stamped_chunk(seq: int, loud: bool) -> bytes:
    """20 ms of 16 kHz PCM (a 300 Hz tone or silence) carrying its sequence number."""
    t = np.arange(_WINDOW_SAMPLES) / INPUT_RATE_HZ
    samples = (6000 * np.sin(2 * np.pi * 300 * t)) if loud else np.zeros(_WINDOW_SAMPLES)
    pcm = bytearray(samples.astype("<i2").tobytes())
    pcm[0:6] = np.array([_STAMP_MAGIC, seq % 1000, seq // 1000], dtype="<i2").tobytes()
    return bytes(pcm)


def stamped_seqs(pcm: bytes | bytearray) -> list[int]:
    """The sequence numbers of the stamped chunks in `pcm`, in arrival order."""
    out = []
    for start in range(0, len(pcm) - _CHUNK_BYTES + 1, _CHUNK_BYTES):
        magic, low, high = np.frombuffer(pcm[start : start + 6], dtype="<i2")
        if magic == _STAMP_MAGIC:
            out.append(int(high) * 1000 + int(low))
    return out
