"""Offline speech recognition with pocketsphinx (its wheel carries the en-US model).

Open-vocabulary recognition of short synthetic or telephone-quality utterances is
weak (pocketsphinx's language model hears "what time is it now" as "wow"), so an
utterance is decoded against a grammar of the phrases the agent can act on, which
is fast (~20 ms per second of audio) and accurate. A result that is not one of
those phrases is treated as out of grammar: the utterance is then decoded again
with the open language model (slower, ~0.3 s per second of audio, but only for
replies of the "I heard ..." kind).

Measured on the 2-core machine: loading the acoustic model costs ~0.15 s, the
language model ~0.4 s more. So grammar decoders are pooled per process (a call
borrows one and gives it back) and the open decoder is loaded once, on first use,
and shared under a lock. Everything here blocks: callers run it in an executor.

The model's own `feat.params` turns on spectral noise removal; it ruins clean or
synthetic speech (13 of 39 test phrases right instead of 38), so this package
ships a copy with `remove_noise no`.

Hot input is turned down before decoding: a browser microphone's automatic gain
control delivers speech 2-3 times louder than the model's initial cepstral means
expect, and its first utterances were misheard until attenuated (never amplified).

Imports pocketsphinx, numpy and the standard library only.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pocketsphinx import Decoder, get_model_path

from gateway.audio.formats import AGENT_INPUT_RATE_HZ, SAMPLE_BYTES, samples_per_frame

logger = logging.getLogger(__name__)

#: Audio per `process_raw` call (see `process_in_slices`): 50 ms of 16 kHz s16.
SLICE_BYTES = 1600

FEAT_PARAMS = Path(__file__).with_name("feat.params")
#: Longest utterance kept for the open-vocabulary second pass: 20 s of 16 kHz s16.
MAX_UTTERANCE_BYTES = 20 * 16_000 * 2  # 20 s
#: pocketsphinx's feature frame rate.
FRAMES_PER_S = 100
#: A grammar phrase must span this share of the caller's speech. Measured on 39
#: espeak-ng phrases: right answers span 0.85-1.4 of the endpointer's speech time,
#: long out-of-grammar sentences forced onto a short phrase 0.1-0.5.
MIN_WORD_COVERAGE = 0.6
#: Until a decoder has heard this much, every utterance gets a second pass with
#: updated cepstral means (see `UtteranceRecognizer.end`); after it, only utterances
#: the first pass could not place. Measured on 47 utterances, each on a fresh
#: decoder: 31 right after one pass, 41 after the second (which costs ~20 ms per
#: second of audio, ~50 ms on the end-of-turn path under load).
ADAPTED_AFTER_S = 5.0
BYTES_PER_S = AGENT_INPUT_RATE_HZ * SAMPLE_BYTES
#: Decoding passes of one-shot recognition (see `recognize_jsgf`).
ONE_SHOT_PASSES = 6
#: Speech whose loudest 30 ms frame is above this RMS (s16) is scaled down so that
#: frame is at `HOT_TARGET_RMS`. Measured: espeak-ng speech peaks at 5,600-7,900;
#: Chromium's processed fake microphone at 13,000-15,600, recognized only once scaled.
HOT_PEAK_RMS = 9000.0
HOT_TARGET_RMS = 5000.0
_LEVEL_FRAME = samples_per_frame(AGENT_INPUT_RATE_HZ, 0.030)
#: Idle grammar decoders kept for the next calls (each holds ~20 MB of model).
MAX_IDLE_DECODERS = 4

_WORD = re.compile(r"[a-z']+")


def decoder_config(**extra: Any) -> dict[str, Any]:
    return {
        "hmm": get_model_path("en-us/en-us"),
        "dict": get_model_path("en-us/cmudict-en-us.dict"),
        "featparams": str(FEAT_PARAMS),
        "loglevel": "FATAL",
        **extra,
    }


def normalize(text: str) -> str:
    """Lower case words only: what the recognizer can say, what phrases are made of."""
    return " ".join(_WORD.findall(text.lower().replace("’", "'")))


def build_jsgf(phrases: list[str]) -> str:
    """A JSGF grammar accepting exactly one of `phrases` (already normalized)."""
    alternatives = " | ".join(sorted(set(phrases)))
    return f"#JSGF V1.0;\ngrammar agent;\npublic <utterance> = {alternatives};\n"


@dataclass(frozen=True, slots=True)
class Recognition:
    """What was said: `in_grammar` when it is one of the agent's phrases, `phrase`
    the phrase it was taken for (None: the text itself, or no phrase)."""

    text: str
    in_grammar: bool
    phrase: str | None = None

    @property
    def meaning(self) -> str:
        """What the reply is chosen on: the matched phrase, else the text."""
        return self.phrase or self.text


class _DecoderPool:
    """Grammar decoders (acoustic model loaded, no language model) shared by calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (decoder, name of the grammar search its last user left on it)
        self._idle: list[tuple[Decoder, str | None]] = []
        self._heard_s: dict[int, float] = {}  # seconds of speech each decoder has decoded
        self._open: Decoder | None = None
        self.open_lock = threading.Lock()

    def take(self) -> tuple[Decoder, str | None]:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return Decoder(**decoder_config(lm=None)), None

    def give_back(self, decoder: Decoder, stale_search: str | None) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE_DECODERS:
                self._idle.append((decoder, stale_search))
            else:
                self._heard_s.pop(id(decoder), None)

    def heard_s(self, decoder: Decoder) -> float:
        with self._lock:
            return self._heard_s.get(id(decoder), 0.0)

    def add_heard(self, decoder: Decoder, seconds: float) -> None:
        with self._lock:
            self._heard_s[id(decoder)] = self._heard_s.get(id(decoder), 0.0) + seconds

    def open_decoder(self) -> Decoder:
        """The language-model decoder; hold `open_lock` while using it."""
        if self._open is None:
            # No flat-lexicon second search: it runs inside `end_utt`, one GIL-holding
            # call of ~75 ms that stalled every call's audio. Out-of-grammar text (only
            # ever echoed as "I heard ...") gets a little rougher; 2 offline calls on
            # one core went from 1.2 % to 0.2 % of frame intervals gapped.
            self._open = Decoder(**decoder_config(fwdflat=False))
        return self._open


_pool = _DecoderPool()


def warm_up() -> None:
    """Load the acoustic model once, so the first call does not pay for it."""
    _pool.give_back(*_pool.take())


def in_dictionary(decoder: Decoder, phrase: str) -> bool:
    return all(decoder.lookup_word(word) is not None for word in phrase.split())


class UtteranceRecognizer:
    """One call's recognizer: grammar of the agent's phrases, one utterance at a time."""

    def __init__(self, phrases: list[str]) -> None:
        self._decoder, stale_search = _pool.take()
        usable = [
            p for p in {normalize(p) for p in phrases} if p and in_dictionary(self._decoder, p)
        ]
        if not usable:
            raise ValueError("no recognizable phrase for the grammar")
        self.phrases = frozenset(usable)
        self._search = f"agent{id(self)}"
        self._decoder.add_jsgf_string(self._search, build_jsgf(usable))
        self._decoder.activate_search(self._search)
        if stale_search is not None:
            self._decoder.remove_search(stale_search)
        self._audio = bytearray()
        self._gain = 1.0
        self._active = False

    def begin(self, pcm: bytes) -> str:
        """Start an utterance with its first audio; returns the partial text."""
        if self._active:
            self._decoder.end_utt()
        self._audio = bytearray()
        self._gain = hot_gain(pcm)
        self._decoder.start_utt()
        self._active = True
        return self.feed(pcm)

    def feed(self, pcm: bytes) -> str:
        """More audio of the utterance; returns the best partial text so far."""
        if not self._active:
            return ""
        if not pcm:
            return ""
        if len(self._audio) < MAX_UTTERANCE_BYTES:
            self._audio += pcm
        self._decoder.process_raw(scaled(pcm, self._gain))
        hyp = self._decoder.hyp()
        return _clean(hyp.hypstr) if hyp is not None else ""

    def end(self, speech_s: float | None = None, open_fallback: bool = True) -> Recognition:
        """Finish the utterance: a grammar phrase, else the open model's best guess
        (or "" without `open_fallback`).

        The grammar forces any speech onto some phrase; with `speech_s` (how long
        the caller spoke) a phrase whose words span less than `MIN_WORD_COVERAGE`
        of it is taken for out-of-grammar speech.
        """
        if not self._active:
            return Recognition("", False)
        self._active = False
        self._decoder.end_utt()
        text = self._grammar_phrase(speech_s)
        adapted = _pool.heard_s(self._decoder) >= ADAPTED_AFTER_S
        _pool.add_heard(self._decoder, len(self._audio) / BYTES_PER_S)
        if self._audio and (text is None or not adapted):
            # Second pass over the whole utterance with the cepstral means updated
            # from it: pocketsphinx's live normalization only moves its means every
            # few seconds of audio, so a decoder's first utterances are decoded with
            # the model's initial means, far from a loud browser microphone's.
            audio = bytes(self._audio)
            self._decoder.get_cmn(True)
            self._decoder.start_utt()
            process_in_slices(self._decoder, scaled(audio, hot_gain(audio)))
            self._decoder.end_utt()
            text = self._grammar_phrase(speech_s)
        if text is not None:
            return Recognition(text, True)
        return Recognition(recognize_open(bytes(self._audio)) if open_fallback else "", False)

    def _grammar_phrase(self, speech_s: float | None) -> str | None:
        """The phrase just decoded, if it is one and covers enough of the speech."""
        hyp = self._decoder.hyp()
        text = _clean(hyp.hypstr) if hyp is not None else ""
        if text not in self.phrases:
            return None
        if speech_s is not None and self._words_s() < MIN_WORD_COVERAGE * speech_s:
            return None
        return text

    def _words_s(self) -> float:
        """Seconds of the last utterance assigned to words (not silence or fillers)."""
        frames: int = sum(
            s.end_frame - s.start_frame + 1
            for s in self._decoder.seg()
            if not s.word.startswith(("<", "[", "+"))
        )
        return frames / FRAMES_PER_S

    def close(self) -> None:
        """Give the decoder back to the pool; the next user drops this grammar."""
        if self._active:
            self._decoder.end_utt()
            self._active = False
        _pool.give_back(self._decoder, self._search)


def hot_gain(pcm: bytes) -> float:
    """1, or less for hot speech (see `HOT_PEAK_RMS`): never amplifies."""
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2).astype(np.float32)
    usable = len(samples) // _LEVEL_FRAME * _LEVEL_FRAME
    if usable == 0:
        return 1.0
    frames = samples[:usable].reshape(-1, _LEVEL_FRAME)
    peak = float(np.sqrt((frames * frames).mean(axis=1)).max())
    return HOT_TARGET_RMS / peak if peak > HOT_PEAK_RMS else 1.0


def scaled(pcm: bytes, gain: float) -> bytes:
    """`pcm` (s16) times `gain`."""
    if gain == 1.0 or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2).astype(np.float32) * gain
    out: bytes = np.clip(samples, -32768, 32767).astype("<i2").tobytes()
    return out


def process_in_slices(decoder: Decoder, pcm: bytes) -> None:
    """Decode `pcm` in 50 ms slices. pocketsphinx holds the GIL for a whole
    `process_raw` call: one call over a 2 s utterance with the open model stalled the
    event loop, and so every call's audio in the process, for ~0.45 s. A slice holds
    it for ~15 ms at most (same results on the phrases checked)."""
    for offset in range(0, len(pcm), SLICE_BYTES):
        decoder.process_raw(pcm[offset : offset + SLICE_BYTES])


def recognize_open(pcm: bytes) -> str:
    """Open-vocabulary recognition of a whole utterance (16 kHz mono s16)."""
    if not pcm:
        return ""
    with _pool.open_lock:
        decoder = _pool.open_decoder()
        decoder.start_utt()
        process_in_slices(decoder, scaled(pcm, hot_gain(pcm)))
        decoder.end_utt()
        hyp = decoder.hyp()
    return _clean(hyp.hypstr) if hyp is not None else ""


def recognize_jsgf(pcm: bytes, jsgf: str) -> str:
    """One-shot recognition of a whole utterance against a JSGF grammar."""
    decoder, stale_search = _pool.take()
    search = f"oneshot{threading.get_ident()}"
    decoder.add_jsgf_string(search, jsgf)
    decoder.activate_search(search)
    if stale_search is not None and stale_search != search:
        decoder.remove_search(stale_search)
    try:
        # Batch-like normalization, independent of what the pooled decoder heard
        # before: start from the model's initial means and decode again with the
        # means updated from this utterance until they have settled. Measured on
        # the synthesizer's renderings of every hour at five minutes each: 120/120
        # right after 6 passes, 116/120 after 4, 93/120 after 2.
        decoder.set_cmn(decoder.config["cmninit"])
        for _ in range(ONE_SHOT_PASSES):
            decoder.start_utt()
            process_in_slices(decoder, pcm)
            decoder.end_utt()
            decoder.get_cmn(True)
        hyp = decoder.hyp()
        return _clean(hyp.hypstr) if hyp is not None else ""
    finally:
        _pool.give_back(decoder, search)


def _clean(hypstr: str) -> str:
    """Drop pocketsphinx's alternate-pronunciation marks ("the(2)") and fillers."""
    words = [re.sub(r"\(\d+\)$", "", w) for w in hypstr.split()]
    return " ".join(w for w in words if w and not w.startswith(("<", "[", "+")))
