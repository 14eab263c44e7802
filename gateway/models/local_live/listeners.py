"""One call's recognizer, as the connection uses it: Whisper (default) or pocketsphinx.

The connection's event loop only `start`s an utterance and `append`s its audio (both
cheap); `partial` and `end` decode and block, so they run in the recognition pool,
one at a time per call. Whisper has no streaming: a partial transcript re-decodes
the whole utterance so far, at most every `PARTIAL_EVERY_S` of new speech.

After Whisper, the agent's phrases (greetings, requests, tool words: the old
recognition grammar) match the transcript loosely (`replies.closest_phrase`), so a
near miss ("what time is it out") still gets the phrase's reply; the transcript the
caller sees is what Whisper heard.

pocketsphinx stays as `local-live-pocketsphinx` (opt-in): 0.07 s of CPU per decode of
a grammar phrase against Whisper's 0.17 s, but 53 % word error rate against 21 % over
280 test utterances, and it holds the GIL while it decodes (docs/benchmarks.md).

Imports the recognizers (`whisper.py`, `recognizer.py`) and `replies.py`.
"""

from __future__ import annotations

import threading
from typing import Protocol

from gateway.audio.formats import AGENT_INPUT_RATE_HZ, SAMPLE_BYTES
from gateway.models.local_live import whisper
from gateway.models.local_live.recognizer import Recognition, UtteranceRecognizer, normalize
from gateway.models.local_live.replies import closest_phrase

#: New speech between two partial decodes of Whisper.
PARTIAL_EVERY_S = 0.5
_BYTES_PER_S = AGENT_INPUT_RATE_HZ * SAMPLE_BYTES
#: Longest utterance kept: Whisper's 30 s window.
MAX_UTTERANCE_BYTES = int(whisper.MAX_WINDOW_S * _BYTES_PER_S)


class CallRecognizer(Protocol):
    """What `LocalLiveConnection` needs from a recognizer."""

    #: Decodes work on a snapshot of the audio, so they may overlap and `peek` may
    #: decode ahead of the end of the turn.
    snapshots: bool

    def start(self, pcm: bytes) -> None:
        """A new utterance begins with `pcm` (event loop, cheap)."""

    def append(self, pcm: bytes) -> None:
        """More audio of the utterance (event loop, cheap)."""

    def partial_due(self) -> bool:
        """Whether a partial decode is worth running now (event loop)."""

    def partial(self) -> str:
        """The utterance so far, decoded (blocking: pool)."""

    def peek(self) -> Recognition:
        """The utterance so far, decoded as `end` would (blocking: pool; only with
        `snapshots`)."""

    def end(self, speech_s: float | None) -> Recognition:
        """The whole utterance, decoded (blocking: pool)."""

    def close(self) -> None:
        """Release the recognizer (blocking: pool)."""


class WhisperRecognizer:
    """Whisper over a growing buffer; phrases matched after recognition."""

    snapshots = True

    def __init__(
        self,
        phrases: list[str],
        engine: whisper.WhisperEngine | None = None,
        window_s: float = whisper.WINDOW_S,
    ) -> None:
        self.phrases = sorted({p for p in (normalize(p) for p in phrases) if p})
        self._engine = engine or whisper.engine()
        self._window_s = window_s
        self._lock = threading.Lock()
        self._audio = bytearray()
        self._decoded_bytes = 0

    def start(self, pcm: bytes) -> None:
        with self._lock:
            self._audio = bytearray(pcm[-MAX_UTTERANCE_BYTES:])
            self._decoded_bytes = 0

    def append(self, pcm: bytes) -> None:
        with self._lock:
            if len(self._audio) < MAX_UTTERANCE_BYTES:
                self._audio += pcm

    def partial_due(self) -> bool:
        with self._lock:
            return len(self._audio) - self._decoded_bytes >= PARTIAL_EVERY_S * _BYTES_PER_S

    def partial(self) -> str:
        with self._lock:
            audio = bytes(self._audio)
            self._decoded_bytes = len(audio)
        return self._engine.transcribe(audio, self._window_s)

    def peek(self) -> Recognition:
        with self._lock:
            audio = bytes(self._audio)
        return self._recognize(audio)

    def end(self, speech_s: float | None = None) -> Recognition:
        with self._lock:
            audio = bytes(self._audio)
            self._audio = bytearray()
            self._decoded_bytes = 0
        return self._recognize(audio)

    def _recognize(self, audio: bytes) -> Recognition:
        text = self._engine.transcribe(audio, self._window_s)
        phrase = closest_phrase(text, self.phrases)
        return Recognition(text, phrase is not None, phrase)

    def close(self) -> None:
        with self._lock:
            self._audio = bytearray()


class SphinxRecognizer:
    """pocketsphinx's streaming `UtteranceRecognizer` behind the same interface."""

    snapshots = False  # one decoder, fed in order

    def __init__(self, phrases: list[str]) -> None:
        self._inner = UtteranceRecognizer(phrases)
        self._lock = threading.Lock()
        self._pending = bytearray()
        self._begin = False

    def start(self, pcm: bytes) -> None:
        with self._lock:
            self._pending = bytearray(pcm)
            self._begin = True

    def append(self, pcm: bytes) -> None:
        with self._lock:
            self._pending += pcm

    def partial_due(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def _take(self) -> tuple[bytes, bool]:
        with self._lock:
            pcm, begin = bytes(self._pending), self._begin
            self._pending.clear()
            self._begin = False
        return pcm, begin

    def partial(self) -> str:
        pcm, begin = self._take()
        return self._inner.begin(pcm) if begin else self._inner.feed(pcm)

    def peek(self) -> Recognition:
        raise NotImplementedError("pocketsphinx decodes as it goes: no snapshots")

    def end(self, speech_s: float | None = None) -> Recognition:
        pcm, begin = self._take()
        if begin:
            self._inner.begin(pcm)
        elif pcm:
            self._inner.feed(pcm)
        return self._inner.end(speech_s)

    def close(self) -> None:
        self._inner.close()
