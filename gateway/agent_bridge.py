"""The only core module that talks to ADK: `Runner.run_live` + `LiveRequestQueue`.

Implements `AgentConnector` / `AgentSession` (gateway/agent_api.py) with an ADK
agent: caller PCM and text go into a `LiveRequestQueue`; ADK events come out as the
gateway's agent events. Speaks PCM bytes with explicit sample rates; knows nothing
of aiortc or HTTP. ADK plugins (models, agents, session services) live under
`gateway/models`, `gateway/agents` and `gateway/adk`.

Resilience (docs/gemini-live.md): ADK reconnects by itself on goAway and on some
drops, but not after an update without a handle, nor when a reconnect's connect
fails. So each session keeps the newest non-empty resumption handle and, when
`run_live` ends or fails for a retryable reason while the call is up, runs it again
on the same request queue with that handle (bounded, with backoff). Caller audio
waits in the bounded queue meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from google.adk.agents import BaseAgent
from google.adk.agents.live_request_queue import LiveRequestQueue
from google.adk.agents.run_config import RunConfig
from google.adk.events import Event
from google.adk.runners import Runner
from google.adk.sessions import BaseSessionService
from google.genai import types

from gateway.adk import _adk
from gateway.adk.live_config import LiveSettings, build_run_config
from gateway.adk.preflight import LiveCheck, UpstreamUnavailable, live_gemini
from gateway.adk.resumption import HandleKeeper, latest_handle
from gateway.adk.upstream import UpstreamFailure, classify
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
from gateway.audio.formats import AGENT_INPUT_MIME
from gateway.errors import AgentUnavailable, UnknownSession

logger = logging.getLogger(__name__)

#: Caller audio waiting for ADK: 5 s. Past it new chunks are dropped and counted
#: (ADK's own queue is unbounded; a stalled upstream must not grow memory forever).
#: This is also what carries caller audio across an upstream reconnect.
MAX_PENDING_AUDIO_CHUNKS = 250
#: Agent events waiting for the call; the reader applies backpressure to ADK.
EVENT_QUEUE_SIZE = 256
#: How long a closing session may take before its task is cancelled.
CLOSE_TIMEOUT_S = 3.0

#: (modality, resumption handle) -> the RunConfig of one `run_live`.
RunConfigFactory = Callable[[Modality, str | None], RunConfig]


def live_run_config_factory(settings: LiveSettings) -> RunConfigFactory:
    """RunConfigs from the Gemini Live settings (transcription, VAD, resumption...)."""

    def factory(modality: Modality, handle: str | None) -> RunConfig:
        text_mode = modality is Modality.TEXT
        return build_run_config(settings, text_mode=text_mode, resumption_handle=handle)

    return factory


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
        if _adk.queued_requests(self) >= self.max_pending:
            self.dropped_chunks += 1
            return
        super().send_realtime(blob)


class AdkAgentSession:
    """The `run_live`s of one call; an owned task turns ADK events into ours."""

    def __init__(
        self,
        runner: Runner,
        user_id: str,
        session_id: str,
        *,
        modality: Modality,
        run_config_factory: RunConfigFactory,
        live: LiveSettings,
        resume_handle: str | None = None,
    ) -> None:
        self._runner = runner
        self._user_id = user_id
        self._session_id = session_id
        self._modality = modality
        self._run_config_factory = run_config_factory
        self._live = live
        self._text_mode = modality is Modality.TEXT
        self._requests = _BoundedLiveRequestQueue(MAX_PENDING_AUDIO_CHUNKS)
        self._events: asyncio.Queue[AgentEvent | None] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self.handles = HandleKeeper(handle=resume_handle)
        #: `run_live`s started after the first (upstream reconnects done by us).
        self.reconnects = 0
        #: The resumption handle each `run_live` started with, in order.
        self.started_with: list[str | None] = []

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
        if self.reconnects or self.dropped_audio_chunks:
            logger.info(
                "session had %d upstream reconnects and dropped %d caller audio chunks",
                self.reconnects,
                self.dropped_audio_chunks,
            )

    async def _run(self) -> None:
        try:
            await self._run_with_reconnects()
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

    async def _run_with_reconnects(self) -> None:
        """Run `run_live` until the caller leaves, resuming after upstream failures."""
        failures = 0
        while True:
            started = time.monotonic()
            delivered, failure = await self._run_once()
            if self._requests.closed:
                return  # the caller hung up: whatever ended run_live is moot
            if failure is None and self.handles.handle is None:
                return  # the agent ended the conversation and cannot be resumed
            failure = failure or UpstreamFailure("transient", 1000)
            if not failure.retryable:
                await self._events.put(AgentError("agent_unavailable", failure.message))
                return
            healthy = delivered or time.monotonic() - started > self._live.connect_timeout_s
            failures = 1 if healthy else failures + 1
            if failures > self._live.max_reconnects:
                logger.warning("upstream failed %d times in a row: %s", failures, failure.cause)
                await self._events.put(AgentError("agent_unavailable", failure.message))
                return
            delay = self._live.reconnect_backoff_s * 2 ** (failures - 1)
            logger.info(
                "upstream %s (code %s); reconnecting in %.2f s with%s handle",
                failure.cause,
                failure.code,
                delay,
                "" if self.handles.handle else "out",
            )
            await asyncio.sleep(delay)
            self.reconnects += 1

    async def _run_once(self) -> tuple[bool, UpstreamFailure | None]:
        """One `run_live`: (whether it delivered any event, why it failed or None)."""
        handle = self.handles.handle
        self.started_with.append(handle)
        config = self._run_config_factory(self._modality, handle)
        delivered = False
        try:
            async with contextlib.aclosing(
                self._runner.run_live(
                    user_id=self._user_id,
                    session_id=self._session_id,
                    live_request_queue=self._requests,
                    run_config=config,
                )
            ) as stream:
                async for event in stream:
                    delivered = True
                    self.handles.observe(event)
                    for ours in translate_event(event, text_mode=self._text_mode):
                        await self._events.put(ours)
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            logger.info("run_live ended: %s (%s)", failure.cause, type(exc).__name__)
            return delivered, failure
        return delivered, None


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
        live: LiveSettings | None = None,
        run_config_factory: RunConfigFactory | None = None,
    ) -> None:
        self.session_service = session_service
        self.app_name = app_name
        self.live = live or LiveSettings()
        self._run_config_factory = run_config_factory or live_run_config_factory(self.live)
        self._runner = Runner(app_name=app_name, agent=agent, session_service=session_service)
        gemini = live_gemini(agent)
        self._check = LiveCheck(gemini, timeout_s=self.live.connect_timeout_s) if gemini else None

    @contextlib.asynccontextmanager
    async def open_session(
        self, *, user_id: str, session_id: str | None, modality: Modality
    ) -> AsyncIterator[AdkAgentSession]:
        await self._check_upstream()
        session_id, handle = await self._resolve_session(user_id, session_id)
        session = AdkAgentSession(
            self._runner,
            user_id,
            session_id,
            modality=modality,
            run_config_factory=self._run_config_factory,
            live=self.live,
            resume_handle=handle,
        )
        session.start()
        try:
            yield session
        finally:
            await session.aclose()

    async def _check_upstream(self) -> None:
        """Refuse the call (503, before the answer) when the Live API will not serve it."""
        if self._check is None:
            return
        try:
            await self._check.ensure()
        except UpstreamUnavailable as exc:
            raise AgentUnavailable(exc.failure.message) from exc

    async def _resolve_session(
        self, user_id: str, session_id: str | None
    ) -> tuple[str, str | None]:
        """(session id, newest stored resumption handle) of a new or continued session."""
        try:
            if session_id is not None:
                found = await self.session_service.get_session(
                    app_name=self.app_name, user_id=user_id, session_id=session_id
                )
                if found is None:
                    raise UnknownSession("no conversation with that session_id")
                if not self.live.session_resumption:
                    return session_id, None
                return session_id, latest_handle(found, max_age_s=self.live.handle_max_age_s)
            created = await self.session_service.create_session(
                app_name=self.app_name, user_id=user_id
            )
            return created.id, None
        except UnknownSession:
            raise
        except Exception as exc:  # boundary: the session store is down or misconfigured
            logger.error("session service failed: %s", type(exc).__name__, exc_info=True)
            raise AgentUnavailable("the conversation store is unavailable") from exc

    async def close(self) -> None:
        await self._runner.close()
