"""Listening conditions for test and benchmark speech (16 kHz mono s16 in and out).

Each turns clean speech into what a caller's line might deliver: quieter, clipped,
narrow-band, through Opus, or under pink noise at a signal-to-noise ratio. Pure
numpy, plus PyAV for Opus (the gateway's own codec library).
"""

from __future__ import annotations

from collections.abc import Callable

import av
import numpy as np

from gateway.audio.pcm import MonoResampler

RATE = 16_000


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def _pcm(samples: np.ndarray) -> bytes:
    out: bytes = np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()
    return out


def gain_db(pcm: bytes, db: float) -> bytes:
    """Louder or quieter by `db` (clipped at full scale)."""
    return _pcm(_samples(pcm) * 10 ** (db / 20))


def clipped(pcm: bytes, db: float = 12.0) -> bytes:
    """`db` louder, hard-clipped at full scale (an overdriven microphone)."""
    return gain_db(pcm, db)


def pink_noise(n: int, rms: float, seed: int = 5) -> np.ndarray:
    """`n` samples of pink (1/f power) noise at `rms` (s16 units)."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).normal(size=n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    result: np.ndarray = noise / np.std(noise) * rms
    return result


def speech_rms(pcm: bytes) -> float:
    """RMS of the 20 ms frames louder than -50 dBFS (the speech, not the pauses)."""
    samples = _samples(pcm)
    frames = samples[: len(samples) // 320 * 320].reshape(-1, 320)
    levels = np.sqrt((frames**2).mean(axis=1))
    voiced = levels[levels > 100]
    return float(np.sqrt((voiced**2).mean())) if len(voiced) else 0.0


def with_pink_noise(pcm: bytes, snr_db: float, seed: int = 5) -> bytes:
    """Pink noise under the speech at `snr_db` (speech RMS over noise RMS)."""
    samples = _samples(pcm)
    noise = pink_noise(len(samples), speech_rms(pcm) / 10 ** (snr_db / 20), seed)
    return _pcm(samples + noise)


def telephone_band(pcm: bytes) -> bytes:
    """Down to 8 kHz and back (300-3400 Hz telephone band, roughly)."""
    narrow = MonoResampler(8_000).pcm(pcm, RATE)
    return MonoResampler(RATE).pcm(narrow, 8_000)


def through_opus(pcm: bytes, bitrate: int = 24_000) -> bytes:
    """Encoded with Opus at `bitrate` and decoded again (48 kHz inside, like WebRTC)."""
    wide = MonoResampler(48_000).pcm(pcm, RATE)
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48_000, "mono", "s16"
    encoder.bit_rate = bitrate
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate, decoder.layout, decoder.format = 48_000, "mono", "s16"
    out = bytearray()
    step = 960 * 2
    padded = wide + bytes(-len(wide) % step + step * 4)
    for i in range(0, len(padded), step):
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(padded[i : i + step], dtype="<i2").reshape(1, -1),
            format="s16",
            layout="mono",
        )
        frame.sample_rate, frame.pts = 48_000, i // 2
        for packet in encoder.encode(frame):
            for decoded in decoder.decode(packet):
                out += decoded.to_ndarray().astype("<i2").tobytes()
    return MonoResampler(RATE).pcm(bytes(out[: len(wide)]), 48_000)


CONDITIONS: dict[str, Callable[[bytes], bytes]] = {
    "clean": lambda pcm: pcm,
    "-25 dB": lambda pcm: gain_db(pcm, -25),
    "clipped +12 dB": clipped,
    "8 kHz band": telephone_band,
    "Opus 24 kbit/s": through_opus,
    "pink noise 20 dB": lambda pcm: with_pink_noise(pcm, 20),
    "pink noise 10 dB": lambda pcm: with_pink_noise(pcm, 10),
}
