"""The caller's prompt, encoded to Opus once per process.

A load tester that encodes Opus per caller spends its CPU on codec work the server
never sees and then lags, which shows up as false gaps. So the WAV prompt is
resampled to 48 kHz mono and encoded once into 20 ms Opus payloads; every caller
sends the same bytes (plus one encoded silence payload between prompts).

Imports PyAV and numpy; nothing from aiortc or the gateway.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import av
import numpy as np

RATE_HZ = 48_000
FRAME_SAMPLES = 960
FRAME_S = FRAME_SAMPLES / RATE_HZ
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


def encode_pcm(pcm: np.ndarray) -> list[bytes]:
    """48 kHz mono s16 samples to 20 ms Opus payloads (the last frame zero-padded)."""
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = BIT_RATE
    codec.format = "s16"
    codec.layout = "mono"
    codec.sample_rate = RATE_HZ
    codec.time_base = fractions.Fraction(1, RATE_HZ)
    codec.options = {"application": "voip"}
    padded = np.zeros(-(-len(pcm) // FRAME_SAMPLES) * FRAME_SAMPLES, dtype="<i2")
    padded[: len(pcm)] = pcm
    payloads: list[bytes] = []
    for index in range(len(padded) // FRAME_SAMPLES):
        samples = padded[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES]
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE_HZ
        frame.pts = index * FRAME_SAMPLES
        frame.time_base = codec.time_base
        payloads.extend(bytes(p) for p in codec.encode(frame))
    payloads.extend(bytes(p) for p in codec.encode(None))
    return payloads


def encode_prompt(path: Path | None = None) -> EncodedPrompt:
    """Read and encode a prompt (the shipped one by default)."""
    pcm = read_pcm(path or default_prompt_path())
    # The encoder's look-ahead adds a frame; keep one payload per input frame.
    frames = -(-len(pcm) // FRAME_SAMPLES)
    payloads = encode_pcm(pcm)[:frames]
    silence = encode_pcm(np.zeros(FRAME_SAMPLES * 8, dtype="<i2"))[4]
    return EncodedPrompt(payloads=tuple(payloads), silence=silence)
