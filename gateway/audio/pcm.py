"""PCM conversion with PyAV: frames or s16 bytes in, tight mono s16 bytes out.

Knows PyAV and numpy only. PyAV pads plane buffers (a 320-sample mono frame has a
768-byte plane), so output is always sliced to `samples * 2` bytes.
"""

from __future__ import annotations

import fractions

import av
import numpy as np

from gateway.audio.formats import SAMPLE_BYTES


def mono_s16_bytes(frame: av.AudioFrame) -> bytes:
    """The PCM of a mono s16 frame, without PyAV's plane padding."""
    return bytes(frame.planes[0])[: frame.samples * SAMPLE_BYTES]


def pcm_to_frame(pcm: bytes, rate_hz: int, pts: int | None = None) -> av.AudioFrame:
    """A mono s16 frame holding exactly `pcm` (whole samples) at `rate_hz`."""
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // SAMPLE_BYTES)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate_hz
    if pts is not None:
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, rate_hz)
    return frame


def tone(duration_s: float, rate_hz: int, freq_hz: float = 440.0, amplitude: int = 8000) -> bytes:
    """A sine tone as mono s16 PCM: the scripted model's voice, and test and bench audio."""
    t = np.arange(round(duration_s * rate_hz)) / rate_hz
    samples: bytes = (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype("<i2").tobytes()
    return samples


def rms(pcm: bytes) -> float:
    """Root mean square of s16 PCM (0 when empty; an odd trailing byte is ignored)."""
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // SAMPLE_BYTES).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


class MonoResampler:
    """Streaming resampler to mono s16 at `out_rate_hz`; keeps filter state across calls."""

    def __init__(self, out_rate_hz: int) -> None:
        self.out_rate_hz = out_rate_hz
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=out_rate_hz)

    def frame(self, frame: av.AudioFrame) -> bytes:
        """Resample one decoded frame (any layout and rate)."""
        frame.pts = None  # the resampler needs no timing, and a jump in pts would upset it
        out = self._resampler.resample(frame)
        if len(out) == 1:
            return mono_s16_bytes(out[0])
        return b"".join(mono_s16_bytes(f) for f in out)

    def pcm(self, pcm: bytes, in_rate_hz: int) -> bytes:
        """Resample mono s16 `pcm` recorded at `in_rate_hz`."""
        if not pcm:
            return b""
        return self.frame(pcm_to_frame(pcm, in_rate_hz))

    def flush(self) -> bytes:
        """What the filter still holds, at the end of a stream."""
        return b"".join(mono_s16_bytes(f) for f in self._resampler.resample(None))
