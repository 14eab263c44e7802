"""`scripted-live`: a tiny, deterministic ADK live model for tests and benchmarks.

It behaves like a live model from ADK's point of view (same `LlmResponse` shapes
as the Gemini connection) at almost no CPU cost:
- caller audio: an energy endpointer; after >= 100 ms of voice followed by 300 ms
  of quiet it transcribes the utterance as "(speech N.N s)" and answers;
- text turns: answered at once with "You said: <text>";
- an answer is a 440 Hz tone (24 kHz PCM, 40 ms chunks, sent at twice real time)
  with an output transcription, then `turn_complete`; in TEXT modality streamed
  text instead. A text containing "long" gets a 6 s answer (for barge-in tests);
- voice during an answer interrupts it (`interrupted`), as Gemini does.

Register by importing this module; use with `model="scripted-live"`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, ClassVar

from google.adk.models.base_llm import BaseLlm
from google.adk.models.base_llm_connection import BaseLlmConnection
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.models.registry import LLMRegistry
from google.genai import types

from gateway.audio.formats import (
    AGENT_INPUT_RATE_HZ,
    AGENT_OUTPUT_MIME,
    AGENT_OUTPUT_RATE_HZ,
    SAMPLE_BYTES,
)
from gateway.audio.pcm import rms, tone

MODEL_NAME = "scripted-live"
VOICE_RMS = 500.0
MIN_VOICE_S = 0.10
END_OF_TURN_QUIET_S = 0.30
BARGE_IN_VOICE_S = 0.06
CHUNK_S = 0.04
REPLY_S = 1.5
LONG_REPLY_S = 6.0


class ScriptedLiveConnection(BaseLlmConnection):
    """One scripted live session; an owned task produces each answer."""

    def __init__(self, text_mode: bool) -> None:
        self._text_mode = text_mode
        self._out: asyncio.Queue[LlmResponse | None] = asyncio.Queue()
        self._reply: asyncio.Task[None] | None = None
        self._voiced_s = 0.0
        self._quiet_s = 0.0
        self._utterance_s = 0.0
        self._closed = False
        self.history: list[types.Content] = []
        self.audio_bytes_received = 0

    async def send_history(self, history: list[types.Content]) -> None:
        self.history = list(history)

    async def send_content(self, content: types.Content) -> None:
        text = " ".join(p.text for p in content.parts or [] if p.text)
        if text:
            self._answer(f"You said: {text}", LONG_REPLY_S if "long" in text else REPLY_S)

    async def send_realtime(self, blob: Any) -> None:
        if not isinstance(blob, types.Blob) or not blob.data:
            return
        self.audio_bytes_received += len(blob.data)
        duration = len(blob.data) // SAMPLE_BYTES / AGENT_INPUT_RATE_HZ
        if rms(blob.data) >= VOICE_RMS:
            self._voiced_s += duration
            self._utterance_s += duration
            self._quiet_s = 0.0
            if self._replying() and self._voiced_s >= BARGE_IN_VOICE_S:
                self._interrupt()
            return
        self._quiet_s += duration
        if self._voiced_s >= MIN_VOICE_S and self._quiet_s >= END_OF_TURN_QUIET_S:
            heard = f"(speech {self._utterance_s:.1f} s)"
            self._voiced_s = self._utterance_s = 0.0
            self._emit(input_transcription=types.Transcription(text=heard, finished=True))
            self._answer(f"I heard {heard}", REPLY_S)
        elif self._quiet_s >= END_OF_TURN_QUIET_S:
            self._voiced_s = self._utterance_s = 0.0

    def _replying(self) -> bool:
        return self._reply is not None and not self._reply.done()

    def _emit(self, **fields: Any) -> None:
        self._out.put_nowait(LlmResponse(**fields))

    def _interrupt(self) -> None:
        assert self._reply is not None
        self._reply.cancel()
        self._emit(interrupted=True)

    def _answer(self, text: str, duration_s: float) -> None:
        if self._replying():
            self._interrupt()
        self._reply = asyncio.create_task(self._speak(text, duration_s), name="scripted/reply")

    async def _speak(self, text: str, duration_s: float) -> None:
        if self._text_mode:
            words = text.split(" ")
            for i, word in enumerate(words):
                chunk = word if i == 0 else " " + word
                self._emit(
                    content=types.Content(role="model", parts=[types.Part(text=chunk)]),
                    partial=True,
                )
                await asyncio.sleep(0.01)
            self._emit(
                content=types.Content(role="model", parts=[types.Part(text=text)]), partial=False
            )
        else:
            self._emit(output_transcription=types.Transcription(text=text, finished=True))
            audio = tone(duration_s, AGENT_OUTPUT_RATE_HZ)
            step = int(CHUNK_S * AGENT_OUTPUT_RATE_HZ) * SAMPLE_BYTES
            for offset in range(0, len(audio), step):
                part = types.Part(
                    inline_data=types.Blob(
                        data=audio[offset : offset + step], mime_type=AGENT_OUTPUT_MIME
                    )
                )
                self._emit(content=types.Content(role="model", parts=[part]))
                await asyncio.sleep(CHUNK_S / 2)
        self._emit(turn_complete=True)

    async def receive(self) -> AsyncGenerator[LlmResponse, None]:
        # ADK calls receive() again after it returns, until one returns without
        # yielding: once closed, return at once.
        while not self._closed:
            response = await self._out.get()
            if response is None:
                self._closed = True
                return
            yield response

    async def close(self) -> None:
        if self._reply is not None:
            self._reply.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reply
        self._out.put_nowait(None)


class ScriptedLiveModel(BaseLlm):
    """`scripted-live`: answers every turn with a tone and a transcript."""

    model: str = "scripted-live"
    #: The connection each session gets (a test subclass can answer otherwise).
    connection_type: ClassVar[type[ScriptedLiveConnection]] = ScriptedLiveConnection

    @classmethod
    def supported_models(cls) -> list[str]:
        return [r"scripted-live.*"]

    @contextlib.asynccontextmanager
    async def _connect(self, llm_request: LlmRequest) -> AsyncIterator[BaseLlmConnection]:
        live = llm_request.live_connect_config
        modalities = (live.response_modalities if live else None) or []
        connection = self.connection_type(text_mode=types.Modality.TEXT in modalities)
        try:
            yield connection
        finally:
            await connection.close()

    def connect(
        self, llm_request: LlmRequest
    ) -> contextlib.AbstractAsyncContextManager[BaseLlmConnection]:
        return self._connect(llm_request)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text="ok")]))


LLMRegistry.register(ScriptedLiveModel)
