"""The offline live connection: what ADK's live flow sees instead of Gemini Live.

It answers in the same `LlmResponse` shapes as ADK's Gemini connection:
- caller audio -> endpointer -> recognizer: `input_transcription` partials (the
  whole hypothesis so far) while the caller speaks, a finished one at end of turn;
- a reply per turn (spoken or typed): a `function_call` part (with an id) when the
  utterance names a declared tool, then, once ADK sends the `function_response`
  back through `send_content`, the result is spoken; otherwise a short answer;
- AUDIO modality: `audio/pcm;rate=24000` inline-data chunks as synthesized, with
  `output_transcription`, and `turn_complete` once the audio would have played;
  TEXT modality: streamed text parts, then the whole text, then `turn_complete`;
- caller speech while a reply is being made or played: synthesis stops and an
  `interrupted` response goes out at once.

Recognition runs in the shared recognition pool (`pool.py`), one decode in flight
per call; partial transcripts only when nothing else decodes; a final decode the pool
refuses (saturated) gets an `error_code="recognizer_busy"` response (non-fatal: the
caller is asked to say it again) instead of a silent stall. Synthesis runs in
espeak's own thread: the event loop only moves bytes. Every task is owned by the
connection and ended by `close()`. ADK plugin: imports google.adk / google.genai and this package.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncGenerator
from typing import Any

from google.adk.models.base_llm_connection import BaseLlmConnection
from google.adk.models.llm_response import LlmResponse
from google.genai import types

from gateway.audio.formats import (
    AGENT_INPUT_RATE_HZ,
    AGENT_OUTPUT_MIME,
    AGENT_OUTPUT_RATE_HZ,
    pcm_duration_s,
)
from gateway.models.local_live.endpointer import (
    Endpointer,
    EndpointerConfig,
    SpeechAudio,
    SpeechPaused,
    SpeechStarted,
    TurnEnded,
)
from gateway.models.local_live.listeners import CallRecognizer
from gateway.models.local_live.pool import POOL, RecognitionPool
from gateway.models.local_live.recognizer import Recognition
from gateway.models.local_live.replies import CallTool, ToolSpec, clip, decide, spoken_result
from gateway.models.local_live.synthesizer import SpeechSynthesizer

logger = logging.getLogger(__name__)


#: Error code of a turn the recognition pool had no room for (docs/protocol.md).
RECOGNIZER_BUSY = "recognizer_busy"
#: Caller audio waiting for the endpointer: 250 chunks (10 s of the gateway's 40 ms chunks). When
#: full, the oldest chunk is dropped and counted: the caller's latest audio matters.
AUDIO_QUEUE_CHUNKS = 250
#: Responses waiting for ADK; producers wait when it is full (backpressure).
RESPONSE_QUEUE_SIZE = 512
#: How long a tool may take before the caller hears an apology.
TOOL_TIMEOUT_S = 30.0
#: How long closing may wait for the connection's tasks.
CLOSE_TIMEOUT_S = 2.0

_END_OF_TURN = b""  # queued by ActivityEnd / audio_stream_end: end the turn now
_call_ids = itertools.count(1)


def _is_input_audio(mime_type: str) -> bool:
    """16 kHz PCM, the only input the endpointer and recognizer understand."""
    kind, _, params = mime_type.partition(";")
    rate = params.strip().removeprefix("rate=") if params else str(AGENT_INPUT_RATE_HZ)
    return kind.strip() == "audio/pcm" and rate == str(AGENT_INPUT_RATE_HZ)


class LocalLiveConnection(BaseLlmConnection):
    """One live session of the offline model."""

    def __init__(
        self,
        *,
        recognizer: CallRecognizer,
        synthesizer: SpeechSynthesizer,
        tools: list[ToolSpec],
        text_mode: bool,
        endpointer: EndpointerConfig | None = None,
        pool: RecognitionPool | None = None,
    ) -> None:
        self._recognizer = recognizer
        self._pool = pool or POOL
        self._partial_task: asyncio.Task[None] | None = None
        # A decode started when the caller paused (see `_speculate`).
        self._speculation: asyncio.Future[Recognition] | None = None
        self._synthesizer = synthesizer
        self._tools = tools
        self._text_mode = text_mode
        self._endpointer = Endpointer(endpointer)
        self._audio: asyncio.Queue[bytes] = asyncio.Queue(AUDIO_QUEUE_CHUNKS)
        self._out: asyncio.Queue[LlmResponse | None] = asyncio.Queue(RESPONSE_QUEUE_SIZE)
        self._pending_calls: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._reply: asyncio.Task[None] | None = None
        self._playback_until = 0.0
        self._last_partial = ""
        self._closing = False  # close() started: take no more input
        self._ended = False  # receive() has seen the end of the output
        self._warned_mime = False
        self.dropped_audio_chunks = 0
        self.history: list[types.Content] = []

    def start(self) -> None:
        """Start listening (the connection's one long-lived task)."""
        self._listener = asyncio.create_task(self._listen(), name="local-live/listen")

    # -- inbound: ADK's send_to_model calls these ----------------------------------

    async def send_history(self, history: list[types.Content]) -> None:
        self.history = list(history)  # kept for inspection; replies do not depend on it

    async def send_content(self, content: types.Content) -> None:
        parts = content.parts or []
        for part in parts:
            if part.function_response is not None:
                self._deliver(part.function_response)
        text = " ".join(p.text for p in parts if p.text and not p.thought)
        if text.strip() and not self._closing:
            await self._start_reply(text)

    async def send_realtime(self, blob: Any) -> None:
        if isinstance(blob, types.Blob):
            if blob.data and _is_input_audio(blob.mime_type or ""):
                self._queue_audio(blob.data)
            elif blob.data and not self._warned_mime:
                self._warned_mime = True
                logger.warning("offline model ignores %s input", blob.mime_type)
        elif isinstance(blob, types.ActivityEnd) or (
            isinstance(blob, types.LiveClientRealtimeInput) and blob.audio_stream_end
        ):
            self._queue_audio(_END_OF_TURN)

    def _queue_audio(self, pcm: bytes) -> None:
        if self._closing:
            return
        if self._audio.full():
            self._audio.get_nowait()
            self.dropped_audio_chunks += 1
        self._audio.put_nowait(pcm)

    def _deliver(self, response: types.FunctionResponse) -> None:
        future = self._pending_calls.pop(response.id or "", None)
        if future is None or future.done():
            logger.debug("function response for no waiting call (%s)", response.name)
            return
        future.set_result(dict(response.response or {}))

    # -- outbound: ADK's receive_from_model drives this -----------------------------

    async def receive(self) -> AsyncGenerator[LlmResponse, None]:
        # ADK calls receive() again after it returns, until one returns without
        # yielding: once closed, return at once.
        while not self._ended:
            response = await self._out.get()
            if response is None:
                self._ended = True
                return
            yield response

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        tasks = [
            t
            for t in (self._listener, self._reply, self._partial_task)
            if t is not None and not t.done()
        ]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
        for future in self._pending_calls.values():
            future.cancel()
        self._pending_calls.clear()
        self._end_output()
        await self._pool.run(self._recognizer.close)

    def _end_output(self) -> None:
        """Make `receive()` end (ADK then ends the live session)."""
        while self._out.full():
            self._out.get_nowait()  # the session is ending: undelivered output is moot
        self._out.put_nowait(None)

    async def _emit(self, **fields: Any) -> None:
        await self._out.put(LlmResponse(**fields))

    # -- listening -------------------------------------------------------------------

    async def _listen(self) -> None:
        try:
            while True:
                pcm = await self._audio.get()
                if pcm is _END_OF_TURN or not pcm:
                    if self._endpointer.in_speech:
                        self._endpointer.reset()
                        self._speculation = None  # speech may have gone on since
                        await self._end_of_turn(None)
                    continue
                for event in self._endpointer.feed(pcm):
                    if isinstance(event, SpeechStarted):
                        await self._interrupt_if_replying()
                        await self._settle_partial()
                        self._last_partial = ""
                        self._speculation = None
                        self._recognizer.start(event.pcm)
                        self._maybe_partial()
                    elif isinstance(event, SpeechAudio):
                        self._recognizer.append(event.pcm)
                        self._maybe_partial()
                    elif isinstance(event, SpeechPaused):
                        self._speculate()
                    elif isinstance(event, TurnEnded):
                        await self._end_of_turn(event.speech_s)
        except asyncio.CancelledError:
            raise
        except Exception:  # boundary: a broken recognizer ends the session, reported once
            logger.exception("offline live model stopped listening")
            await self._emit(
                error_code="LOCAL_LIVE_FAILED",
                error_message="the offline model stopped listening",
                turn_complete=True,
            )
            self._end_output()

    def _maybe_partial(self) -> None:
        """Start a partial decode if none is in flight, one is due and a worker is idle."""
        if self._partial_task is not None and not self._partial_task.done():
            return
        if not self._recognizer.partial_due():
            return
        future = self._pool.submit(self._recognizer.partial, optional=True)
        if future is not None:
            self._partial_task = asyncio.create_task(
                self._partial(future), name="local-live/partial"
            )

    def _speculate(self) -> None:
        """The caller paused: decode what they said so far now.

        If the pause becomes the end of the turn (`hangover_s` later, no speech in
        between), this is the final recognition and its decode overlapped the
        hangover; if they speak again, it is dropped (the next pause starts another).
        Whisper's decode costs about the hangover (~0.1-0.3 s), so this takes it off
        the time between the end of speech and the reply."""
        self._speculation = None
        if not self._recognizer.snapshots:
            return
        future = self._pool.submit(self._recognizer.peek)  # likely the final: not optional
        if future is not None:
            future.add_done_callback(_retrieve)
            self._speculation = future

    async def _settle_partial(self) -> None:
        """Let the partial decode in flight finish (one decode per call at a time)."""
        if self._partial_task is not None:
            await asyncio.wait([self._partial_task])
            self._partial_task = None

    async def _partial(self, decoding: asyncio.Future[str]) -> None:
        try:
            text = await decoding
        except asyncio.CancelledError:
            raise
        except Exception:  # boundary: a failed partial is only a missing partial
            logger.exception("partial recognition failed")
            return
        if text and text != self._last_partial:
            self._last_partial = text
            await self._emit(
                input_transcription=types.Transcription(text=text, finished=False), partial=True
            )

    async def _end_of_turn(self, speech_s: float | None) -> None:
        logger.debug("end of turn")
        speculation, self._speculation = self._speculation, None
        if self._recognizer.snapshots and self._partial_task is not None:
            self._partial_task.cancel()  # superseded: no partial after the final
            self._partial_task = None
        else:
            await self._settle_partial()
        decoding = speculation or self._pool.submit(self._recognizer.end, speech_s)
        if decoding is None:
            logger.warning("recognition pool saturated: a turn was not recognized")
            await self._emit(
                error_code=RECOGNIZER_BUSY,
                error_message="too many callers are speaking at once: please say that again",
            )
            return
        recognition = await decoding
        if speculation is not None:
            self._recognizer.start(b"")  # the utterance is done with
        logger.debug("recognized")
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("heard %r (grammar: %s)", recognition.text, recognition.in_grammar)
        if not recognition.text:
            return
        await self._emit(
            input_transcription=types.Transcription(text=recognition.text, finished=True),
            partial=False,
        )
        await self._start_reply(recognition.meaning)

    # -- replying --------------------------------------------------------------------

    def _replying(self) -> bool:
        active = self._reply is not None and not self._reply.done()
        return active or asyncio.get_running_loop().time() < self._playback_until

    async def _interrupt_if_replying(self) -> None:
        """Barge-in: stop the reply (synthesis aborts) and say so at once."""
        if not self._replying():
            return
        self._playback_until = 0.0
        if self._reply is not None and not self._reply.done():
            self._reply.cancel()
            await asyncio.wait([self._reply], timeout=CLOSE_TIMEOUT_S)
        await self._emit(interrupted=True)

    async def _start_reply(self, text: str) -> None:
        """A new turn replaces any reply still running (it is interrupted first)."""
        await self._interrupt_if_replying()
        self._reply = asyncio.create_task(self._answer(text), name="local-live/reply")

    async def _answer(self, heard: str) -> None:
        try:
            reply = decide(heard, self._tools)
            if reply is None:
                return
            text = await self._call_tool(reply.name) if isinstance(reply, CallTool) else reply.text
            if self._text_mode:
                await self._write(text)
            else:
                await self._speak(text)
        except asyncio.CancelledError:
            raise
        except Exception:  # boundary: one failed reply is reported; listening goes on
            logger.exception("offline live model failed to reply")
            await self._emit(
                error_code="LOCAL_LIVE_REPLY_FAILED",
                error_message="the offline model could not reply",
                turn_complete=True,
            )

    async def _call_tool(self, name: str) -> str:
        """A real function call through ADK's live tool flow; the result as a sentence."""
        call_id = f"local-live-{next(_call_ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending_calls[call_id] = future
        call = types.FunctionCall(id=call_id, name=name, args={})
        await self._emit(
            content=types.Content(role="model", parts=[types.Part(function_call=call)])
        )
        try:
            return spoken_result(await asyncio.wait_for(future, TOOL_TIMEOUT_S))
        except TimeoutError:
            logger.warning("tool %s gave no response in %.0f s", name, TOOL_TIMEOUT_S)
            return "Sorry, that took too long."
        finally:
            self._pending_calls.pop(call_id, None)

    async def _write(self, text: str) -> None:
        text = clip(text)
        for i, word in enumerate(text.split(" ")):
            chunk = types.Part(text=word if i == 0 else f" {word}")
            await self._emit(content=types.Content(role="model", parts=[chunk]), partial=True)
        await self._emit(content=types.Content(role="model", parts=[types.Part(text=text)]))
        await self._emit(turn_complete=True)

    async def _speak(self, text: str) -> None:
        text = clip(text)
        loop = asyncio.get_running_loop()
        started: float | None = None
        spoken_s = 0.0
        async with contextlib.aclosing(self._synthesizer.stream(text)) as chunks:
            async for pcm in chunks:
                first = started is None
                if first:
                    started = loop.time()
                    logger.debug("first reply audio")
                spoken_s += pcm_duration_s(pcm, AGENT_OUTPUT_RATE_HZ)
                blob = types.Blob(mime_type=AGENT_OUTPUT_MIME, data=pcm)
                part = types.Part(inline_data=blob)
                await self._emit(content=types.Content(role="model", parts=[part]))
                if first:  # as from Gemini, the words follow the first audio
                    await self._emit(
                        output_transcription=types.Transcription(text=text, finished=False),
                        partial=True,
                    )
        await self._emit(
            output_transcription=types.Transcription(text=text, finished=True), partial=False
        )
        # Synthesis runs far ahead of playback; the turn lasts until the caller has
        # heard it, so speech meanwhile still counts as a barge-in.
        if started is not None:
            self._playback_until = started + spoken_s
            await asyncio.sleep(max(0.0, self._playback_until - loop.time()))
            self._playback_until = 0.0
        await self._emit(turn_complete=True)


def _retrieve(future: asyncio.Future[Recognition]) -> None:
    """A dropped speculative decode's failure is logged here, not lost."""
    if not future.cancelled() and future.exception() is not None:
        logger.warning("speculative recognition failed", exc_info=future.exception())
