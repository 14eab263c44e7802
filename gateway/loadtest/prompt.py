"""A caller's voice as Opus payloads: the prompt encoded once per process, and the
streaming encoder for any other PCM a caller plays.

A load tester that encodes Opus per caller spends its CPU on codec work the server
never sees and then lags, which shows up as false gaps. So the WAV prompt is
resampled to 48 kHz mono and encoded once into 20 ms Opus payloads; every caller
sends the same bytes (plus one encoded silence payload between prompts).

Imports PyAV, numpy and the gateway's audio formats; nothing from aiortc.
"""

from __future__ import annotations

import fractions
import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import av
import numpy as np

from gateway.audio.formats import (
    PTIME_S,
    SAMPLE_BYTES,
    WEBRTC_FRAME_SAMPLES,
    WEBRTC_RATE_HZ,
)

RATE_HZ = WEBRTC_RATE_HZ
FRAME_SAMPLES = WEBRTC_FRAME_SAMPLES
FRAME_S = PTIME_S
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_BYTES
#: Opus bit rate for the prompt: speech-grade mono; the server decodes any rate.
BIT_RATE = 32_000
#: Shortest and longest prompt accepted: the agent needs speech to answer; a prompt
#: longer than this is more likely a wrong file than a question.
MIN_PROMPT_S = 0.2
MAX_PROMPT_S = 30.0


class PromptError(ValueError):
    """The prompt file cannot be used (missing, not audio, too short or too long)."""


@dataclass(frozen=True, slots=True)
class EncodedPrompt:
    payloads: tuple[bytes, ...]
    """One Opus payload per 20 ms frame of the prompt."""
    silence: bytes
    """An Opus payload of 20 ms of digital silence (sent between prompts)."""

    @property
    def duration_s(self) -> float:
        return len(self.payloads) * FRAME_S


def default_prompt_path() -> Path:
    """The prompt shipped with the package: "what is the weather like today"."""
    return Path(str(resources.files("gateway.loadtest").joinpath("prompt.wav")))


def read_pcm(path: Path) -> np.ndarray:
    """The file's audio as 48 kHz mono s16 samples."""
    if not path.is_file():
        raise PromptError(f"prompt file not found: {path}")
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE_HZ)
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise PromptError(f"prompt file has no audio stream: {path}")
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        raise PromptError(f"cannot read prompt file {path}: {exc}") from exc
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype="<i2")
    duration = len(pcm) / RATE_HZ
    if not MIN_PROMPT_S <= duration <= MAX_PROMPT_S:
        raise PromptError(
            f"prompt must last {MIN_PROMPT_S}-{MAX_PROMPT_S} s, {path} lasts {duration:.2f} s"
        )
    return pcm.astype("<i2")


class OpusFrameEncoder:
    """Streaming encoder of a caller's voice: 20 ms frames of 48 kHz mono s16 in, one
    Opus payload each out (speech-grade `voip` at `BIT_RATE`). The encoder holds
    ~6.5 ms of look-ahead: a frame's payload ends a little before the frame does,
    and one more frame (silence will do) lets the tail out. At `BIT_RATE` libopus
    codes speech in its SILK/hybrid modes; at 64 kbit/s and above it switches to CELT,
    which keeps tones and abrupt changes intact (what test signals need)."""

    def __init__(self, bit_rate: int = BIT_RATE) -> None:
        codec = av.CodecContext.create("libopus", "w")
        codec.bit_rate = bit_rate
        codec.format = "s16"
        codec.layout = "mono"
        codec.sample_rate = RATE_HZ
        codec.time_base = fractions.Fraction(1, RATE_HZ)
        codec.options = {"application": "voip"}
        self._codec = codec
        self._pts = 0

    def encode(self, pcm: bytes) -> list[bytes]:
        """Payloads for `pcm` (whole frames; a partial last frame is zero-padded)."""
        samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // SAMPLE_BYTES)
        padded = np.zeros(-(-len(samples) // FRAME_SAMPLES) * FRAME_SAMPLES, dtype="<i2")
        padded[: len(samples)] = samples
        payloads: list[bytes] = []
        for index in range(len(padded) // FRAME_SAMPLES):
            frame_samples = padded[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES]
            frame = av.AudioFrame.from_ndarray(
                frame_samples.reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate = RATE_HZ
            frame.pts = self._pts
            frame.time_base = self._codec.time_base
            self._pts += FRAME_SAMPLES
            payloads.extend(bytes(p) for p in self._codec.encode(frame))
        return payloads

    def flush(self) -> list[bytes]:
        """What the encoder still holds, at the end of a stream."""
        return [bytes(p) for p in self._codec.encode(None)]


def encode_pcm(pcm: np.ndarray) -> list[bytes]:
    """48 kHz mono s16 samples to 20 ms Opus payloads (the last frame zero-padded)."""
    encoder = OpusFrameEncoder()
    return encoder.encode(pcm.astype("<i2").tobytes()) + encoder.flush()


def encode_prompt(path: Path | None = None) -> EncodedPrompt:
    """Read and encode a prompt (the shipped one by default)."""
    pcm = read_pcm(path or default_prompt_path())
    # The encoder's look-ahead adds a frame; keep one payload per input frame.
    frames = -(-len(pcm) // FRAME_SAMPLES)
    payloads = encode_pcm(pcm)[:frames]
    return EncodedPrompt(payloads=tuple(payloads), silence=silence_payload())


@functools.cache
def silence_payload() -> bytes:
    """One 20 ms payload of digital silence, from an encoder past its start-up."""
    return encode_pcm(np.zeros(FRAME_SAMPLES * 8, dtype="<i2"))[4]
