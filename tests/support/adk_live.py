"""Drive a real ADK `Runner.run_live` session from a test: feed audio, record events.

Nothing is faked: ADK's runner, live flow and tool execution, the in-memory session
service, and the offline model. Events are recorded with their arrival time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from google.adk.agents import BaseAgent
from google.adk.agents.live_request_queue import LiveRequestQueue
from google.adk.agents.run_config import RunConfig, StreamingMode  # type: ignore[attr-defined]
from google.adk.events import Event
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.genai import types

from gateway.audio.formats import AGENT_INPUT_MIME, AGENT_INPUT_RATE_HZ

CHUNK_S = 0.02
RATE = AGENT_INPUT_RATE_HZ


@dataclass
class LiveCall:
    queue: LiveRequestQueue
    events: list[tuple[float, Event]] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 15.0) -> float:
        """Arrival time of the first event (past or coming) matching `predicate`."""
        async with asyncio.timeout(timeout):
            while True:
                for at, event in self.events:
                    if predicate(event):
                        return at
                self._arrived.clear()
                await self._arrived.wait()

    async def speak(self, pcm: bytes, trailing_silence_s: float = 1.0) -> float:
        """Send 16 kHz PCM in paced 20 ms chunks; returns when the speech ended."""
        step = int(RATE * CHUNK_S) * 2
        audio = pcm + bytes(int(trailing_silence_s * RATE) * 2)
        start = time.monotonic()
        ended = start + len(pcm) / (2 * RATE)
        for i, offset in enumerate(range(0, len(audio), step)):
            due = start + i * CHUNK_S
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self.queue.send_realtime(
                types.Blob(data=audio[offset : offset + step], mime_type=AGENT_INPUT_MIME)
            )
        return ended

    def audio(self, after: float = 0.0, before: float = float("inf")) -> bytes:
        return b"".join(
            part.inline_data.data
            for at, event in self.events
            if after <= at < before and event.content
            for part in event.content.parts or []
            if part.inline_data and part.inline_data.data
        )


def run_config(modality: types.Modality) -> RunConfig:
    return RunConfig(
        streaming_mode=StreamingMode.BIDI,
        response_modalities=[modality],
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
    )


@contextlib.asynccontextmanager
async def live_call(agent: BaseAgent, modality: types.Modality) -> AsyncIterator[LiveCall]:
    service = InMemorySessionService()
    runner = Runner(app_name="local-live-test", agent=agent, session_service=service)
    session = await service.create_session(app_name="local-live-test", user_id="caller")
    call = LiveCall(LiveRequestQueue())

    async def read() -> None:
        async with contextlib.aclosing(
            runner.run_live(
                user_id="caller",
                session_id=session.id,
                live_request_queue=call.queue,
                run_config=run_config(modality),
            )
        ) as stream:
            async for event in stream:
                call.events.append((time.monotonic(), event))
                call._arrived.set()

    reader = asyncio.create_task(read(), name="test/run_live")
    try:
        yield call
    finally:
        call.queue.close()
        try:
            await asyncio.wait_for(reader, 5.0)
        finally:
            await runner.close()


def is_user_final(event: Event) -> bool:
    t = event.input_transcription
    return bool(t and t.finished and t.text)


def user_finals(call: LiveCall) -> list[str | None]:
    """The text of every final user transcription, in order."""
    return [
        e.input_transcription.text
        for _, e in call.events
        if e.input_transcription is not None and is_user_final(e)
    ]


def function_calls(call: LiveCall, name: str) -> list[types.FunctionCall]:
    return [c for _, e in call.events for c in e.get_function_calls() if c.name == name]


def function_responses(call: LiveCall, name: str) -> list[types.FunctionResponse]:
    return [r for _, e in call.events for r in e.get_function_responses() if r.name == name]
