"""The only core module that talks to ADK: `Runner.run_live` + `LiveRequestQueue`.

Implements `AgentConnector` / `AgentSession` (gateway/agent_api.py) with an ADK
agent: caller PCM and text go into a `LiveRequestQueue`; ADK events come out as the
gateway's agent events. Speaks PCM bytes with explicit sample rates; knows nothing
of aiortc or HTTP. ADK plugins (models, agents, session services) live under
`gateway/models`, `gateway/agents` and `gateway/adk`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Callable

from google.adk.agents import BaseAgent
from google.adk.agents.live_request_queue import LiveRequestQueue
from google.adk.agents.run_config import RunConfig, StreamingMode  # type: ignore[attr-defined]
from google.adk.events import Event
from google.adk.runners import Runner
from google.adk.sessions import BaseSessionService
from google.genai import types

from gateway.agent_api import (
    AgentAudio,
    AgentError,
    AgentEvent,
    AgentInterrupted,
    AgentText,
    Modality,
    Transcript,
    TurnComplete,
)
from gateway.audio_format import AGENT_INPUT_MIME
from gateway.errors import AgentUnavailable, UnknownSession

logger = logging.getLogger(__name__)

#: Caller audio waiting for ADK: 5 s. Past it new chunks are dropped and counted
#: (ADK's own queue is unbounded; a stalled upstream must not grow memory forever).
MAX_PENDING_AUDIO_CHUNKS = 250
#: Agent events waiting for the call; the reader applies backpressure to ADK.
EVENT_QUEUE_SIZE = 256
#: How long a closing session may take before its task is cancelled.
CLOSE_TIMEOUT_S = 3.0

RunConfigFactory = Callable[[Modality], RunConfig]


def default_run_config(modality: Modality) -> RunConfig:
    """One response modality per session; transcription on both sides."""
    return RunConfig(
        streaming_mode=StreamingMode.BIDI,
        response_modalities=[
            types.Modality.TEXT if modality is Modality.TEXT else types.Modality.AUDIO
        ],
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
    )


def load_agent(spec: str) -> BaseAgent:
    """Import an agent given as `module:attribute`."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"agent must be given as module:attribute, not {spec!r}")
    agent = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(agent, BaseAgent):
        raise TypeError(f"{spec} is a {type(agent).__name__}, not an ADK agent")
    return agent


class _BoundedLiveRequestQueue(LiveRequestQueue):
    """ADK's queue, refusing audio past a bound instead of growing without limit."""

    def __init__(self, max_pending: int) -> None:
        super().__init__()
        self.max_pending = max_pending
        self.dropped_chunks = 0

    def send_realtime(self, blob: types.Blob) -> None:
        if self._queue.qsize() >= self.max_pending:
            self.dropped_chunks += 1
            return
        super().send_realtime(blob)


class AdkAgentSession:
    """One `run_live` for one call; an owned task turns ADK events into ours."""

    def __init__(self, runner: Runner, user_id: str, session_id: str, run_config: RunConfig):
        self._runner = runner
        self._user_id = user_id
        self._session_id = session_id
        self._run_config = run_config
        self._text_mode = types.Modality.TEXT in (run_config.response_modalities or [])
        self._requests = _BoundedLiveRequestQueue(MAX_PENDING_AUDIO_CHUNKS)
        self._events: asyncio.Queue[AgentEvent | None] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def dropped_audio_chunks(self) -> int:
        return self._requests.dropped_chunks

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self._session_id}/run_live")

    def send_audio(self, pcm: bytes) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("[CLIENT TO AGENT] audio/pcm: %d bytes", len(pcm))
        self._requests.send_realtime(types.Blob(data=pcm, mime_type=AGENT_INPUT_MIME))

    def send_text(self, text: str) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("[CLIENT TO AGENT] text/plain: %d bytes", len(text.encode()))
        self._requests.send_content(types.Content(role="user", parts=[types.Part(text=text)]))

    async def events(self) -> AsyncIterator[AgentEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    async def aclose(self) -> None:
        """Close the queue (ADK ends `run_live`), then bound the wait and cancel."""
        self._requests.close()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), CLOSE_TIMEOUT_S)
        except TimeoutError:
            logger.warning("session run_live did not end in %.0f s; cancelling", CLOSE_TIMEOUT_S)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        try:
            async with contextlib.aclosing(
                self._runner.run_live(
                    user_id=self._user_id,
                    session_id=self._session_id,
                    live_request_queue=self._requests,
                    run_config=self._run_config,
                )
            ) as stream:
                async for event in stream:
                    for ours in translate_event(event, text_mode=self._text_mode):
                        await self._events.put(ours)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # boundary: any agent failure ends the call cleanly
            logger.warning("agent session failed: %s", type(exc).__name__, exc_info=True)
            await self._events.put(
                AgentError("agent_error", f"the agent failed ({type(exc).__name__})")
            )
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                self._events.put_nowait(None)


def translate_event(event: Event, *, text_mode: bool) -> list[AgentEvent]:
    """ADK event -> the gateway's agent events (audio, transcripts, text, turn signals)."""
    out: list[AgentEvent] = []
    if event.error_code:
        out.append(AgentError("agent_error", f"the agent reported {event.error_code}"))
    for part in (event.content.parts or []) if event.content else []:
        blob = part.inline_data
        if blob and blob.data and (blob.mime_type or "").startswith("audio/pcm"):
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("[AGENT TO CLIENT] audio/pcm: %d bytes", len(blob.data))
            out.append(AgentAudio(blob.data))
        elif part.text and text_mode and not part.thought:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("[AGENT TO CLIENT] text/plain: %d bytes", len(part.text.encode()))
            out.append(AgentText(part.text, final=not event.partial))
    for role, transcription in (
        ("user", event.input_transcription),
        ("agent", event.output_transcription),
    ):
        if transcription is not None and transcription.text:
            final = (
                transcription.finished if transcription.finished is not None else not event.partial
            )
            out.append(Transcript(role, transcription.text, final))  # type: ignore[arg-type]
    if event.interrupted:
        out.append(AgentInterrupted())
    if event.turn_complete:
        out.append(TurnComplete())
    return out


class AdkAgentConnector:
    """Opens one ADK live session per call against one agent and session service."""

    def __init__(
        self,
        agent: BaseAgent,
        session_service: BaseSessionService,
        *,
        app_name: str,
        run_config_factory: RunConfigFactory = default_run_config,
    ) -> None:
        self.session_service = session_service
        self.app_name = app_name
        self._run_config_factory = run_config_factory
        self._runner = Runner(app_name=app_name, agent=agent, session_service=session_service)

    @contextlib.asynccontextmanager
    async def open_session(
        self, *, user_id: str, session_id: str | None, modality: Modality
    ) -> AsyncIterator[AdkAgentSession]:
        session_id = await self._resolve_session(user_id, session_id)
        session = AdkAgentSession(
            self._runner, user_id, session_id, self._run_config_factory(modality)
        )
        session.start()
        try:
            yield session
        finally:
            await session.aclose()

    async def _resolve_session(self, user_id: str, session_id: str | None) -> str:
        try:
            if session_id is not None:
                found = await self.session_service.get_session(
                    app_name=self.app_name, user_id=user_id, session_id=session_id
                )
                if found is None:
                    raise UnknownSession("no conversation with that session_id")
                return session_id
            created = await self.session_service.create_session(
                app_name=self.app_name, user_id=user_id
            )
            return created.id
        except UnknownSession:
            raise
        except Exception as exc:  # boundary: the session store is down or misconfigured
            logger.error("session service failed: %s", type(exc).__name__, exc_info=True)
            raise AgentUnavailable("the conversation store is unavailable") from exc

    async def close(self) -> None:
        await self._runner.close()
