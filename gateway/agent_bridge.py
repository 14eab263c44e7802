"""The only core module that talks to ADK: `Runner.run_live` + `LiveRequestQueue`.

Implements `AgentConnector` / `AgentSession` (gateway/agent_api.py) with an ADK
agent: caller PCM and text go into a `LiveRequestQueue`; ADK events come out as the
gateway's agent events (`adk/event_translation.py`). Speaks PCM bytes with explicit
sample rates; knows nothing of aiortc or HTTP. ADK plugins (models, agents, session
services) live under `gateway/models`, `gateway/agents` and `gateway/adk`.

The connector checks the settings against the agent's live model and configures the
agent for it once (`adk/live_plan.py`). Each session owns two tasks:
- `{call}/agent`: resilience (docs/gemini-live.md). ADK reconnects by itself on goAway
  and on some drops, but not after an update without a handle, nor when a
  reconnect's connect fails. So each session keeps the newest non-empty resumption
  handle and, when `run_live` ends or fails for a retryable reason while the call is
  up, runs it again on the same request queue with that handle (bounded, with
  backoff). Caller audio waits in the bounded queue meanwhile.
- `{call}/stall-watch` (Gemini models): the stall watchdog (`adk/stall_watchdog.py`)
  nudges a model that went quiet where it should speak, then rotates its upstream
  connection (the same resumption path), counting both in `/stats`.
Both tasks and their upstream connection end with the call (`aclose`). One module,
because both own the same `run_live` and request queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import AsyncIterator

from google.adk.agents import BaseAgent
from google.adk.agents.live_request_queue import LiveRequestQueue
from google.adk.events import Event
from google.adk.runners import Runner
from google.adk.sessions import BaseSessionService
from google.genai import types

from gateway.adk import _adk
from gateway.adk.event_translation import event_signals, translate_event
from gateway.adk.live_config import LiveSettings
from gateway.adk.live_plan import LivePlan, apply_to_agent, plan_for_agent
from gateway.adk.preflight import LiveCheck, UpstreamUnavailable, live_gemini
from gateway.adk.resumption import HandleKeeper, ensure_conversation, open_conversation
from gateway.adk.run_config import RunConfigFactory, live_run_config_factory
from gateway.adk.stall_watchdog import Recovery, StallKind, StallWatchdog, Step, watch
from gateway.adk.store_guard import STORE_LISTENER, SessionStoreUnavailable
from gateway.adk.upstream import UpstreamFailure, classify, refusal_message
from gateway.agent_api import (
    AgentError,
    AgentEvent,
    Modality,
)
from gateway.audio.formats import AGENT_INPUT_MIME
from gateway.errors import AgentUnavailable
from gateway.metrics.counters import COUNTERS

logger = logging.getLogger(__name__)

#: Caller audio waiting for ADK: 5 s. Past it new chunks are dropped and counted
#: (ADK's own queue is unbounded; a stalled upstream must not grow memory forever).
#: This is also what carries caller audio across an upstream reconnect.
MAX_PENDING_AUDIO_CHUNKS = 250
#: Agent events waiting for the call; the reader applies backpressure to ADK.
EVENT_QUEUE_SIZE = 256
#: How long a closing session may take before its task is cancelled.
CLOSE_TIMEOUT_S = 3.0
#: The stall watchdog's nudge: a blank turn (see gateway/adk/stall_watchdog.py).
NUDGE_TEXT = " "
#: The caller's `error` code when the session store fails (docs/protocol.md): not
#: fatal while the call goes on unsaved, fatal when the conversation cannot be read.
STORE_ERROR_CODE = "session_store_unavailable"


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
    """The `run_live`s of one call; an owned task turns ADK events into ours, another
    (Gemini models) watches for stalls and recovers from them."""

    def __init__(
        self,
        runner: Runner,
        user_id: str,
        session_id: str,
        *,
        modality: Modality,
        run_config_factory: RunConfigFactory,
        live: LiveSettings,
        plan: LivePlan,
        call_id: str = "",
        resume_handle: str | None = None,
    ) -> None:
        self._runner = runner
        self._user_id = user_id
        self._session_id = session_id
        self._modality = modality
        self._run_config_factory = run_config_factory
        self._live = live
        self._name = call_id or session_id
        self._text_mode = modality is Modality.TEXT
        self._text_from_transcription = plan.text_from_transcription
        self._requests = _BoundedLiveRequestQueue(MAX_PENDING_AUDIO_CHUNKS)
        self._events: asyncio.Queue[AgentEvent | None] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._tasks: list[asyncio.Task[None]] = []
        self._watchdog: StallWatchdog | None = None
        if plan.model.generation != "not Gemini" and live.stall_timeout_s > 0:
            self._watchdog = StallWatchdog(live.stall_timeout_s, live.stall_nudge_timeout_s)
        self._watch_wakeup = asyncio.Event()
        self._current_run: asyncio.Task[tuple[bool, UpstreamFailure | None]] | None = None
        self._rotating = False
        self._nudge_on_connect: StallKind | None = None
        self.handles = HandleKeeper(handle=resume_handle)
        #: `run_live`s started after the first (upstream reconnects done by us).
        self.reconnects = 0
        #: The resumption handle each `run_live` started with, in order.
        self.started_with: list[str | None] = []
        #: Stalls seen, nudges sent and connections rotated in this session.
        self.stalls: list[StallKind] = []
        self.nudges = 0
        self.rotations = 0
        #: Whether the last append to the session store failed (the caller was told).
        self.store_failing = False

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def dropped_audio_chunks(self) -> int:
        return self._requests.dropped_chunks

    def start(self) -> None:
        # The tasks copy the current OpenTelemetry context (contextvars): started from
        # a call's task, where its `call` span is current, ADK's spans of every
        # `run_live` below join the call's trace (gateway/metrics/call_trace.py).
        self._tasks.append(asyncio.create_task(self._run(), name=f"{self._name}/agent"))
        if self._watchdog is not None:
            watching = watch(self._watchdog, self._watch_wakeup, self._recover)
            self._tasks.append(asyncio.create_task(watching, name=f"{self._name}/stall-watch"))

    def send_audio(self, pcm: bytes) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("[CLIENT TO AGENT] audio/pcm: %d bytes", len(pcm))
        self._requests.send_realtime(types.Blob(data=pcm, mime_type=AGENT_INPUT_MIME))

    def send_text(self, text: str) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("[CLIENT TO AGENT] text/plain: %d bytes", len(text.encode()))
        self._requests.send_content(types.Content(role="user", parts=[types.Part(text=text)]))
        if self._watchdog is not None:
            self._watchdog.user_text_sent(_now())
            self._watch_wakeup.set()

    async def events(self) -> AsyncIterator[AgentEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    async def aclose(self) -> None:
        """Close the queue (ADK ends `run_live` and its upstream connection), then bound
        the wait and cancel: no live session outlives its call."""
        self._requests.close()
        tasks, self._tasks = self._tasks, []
        for task in tasks[1:]:
            task.cancel()  # the watchdog has nothing left to watch
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
        if tasks[0] in pending:
            logger.warning("session run_live did not end in %.0f s; cancelling", CLOSE_TIMEOUT_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.reconnects or self.dropped_audio_chunks or self.stalls:
            logger.info(
                "%s: %d upstream reconnects, %d stalls (%d nudges, %d rotations), "
                "%d caller audio chunks dropped", self._name, self.reconnects,
                len(self.stalls), self.nudges, self.rotations, self.dropped_audio_chunks,
            )  # fmt: skip

    async def _run(self) -> None:
        try:
            await self._run_with_reconnects()
        except asyncio.CancelledError:
            raise
        except SessionStoreUnavailable:  # logged once per outage by the store guard
            message = "the conversation store is unavailable; the call cannot go on"
            await self._events.put(AgentError(STORE_ERROR_CODE, message))
        except Exception as exc:  # boundary: any agent failure ends the call cleanly
            logger.warning("agent session failed: %s", type(exc).__name__, exc_info=True)
            await self._events.put(
                AgentError("agent_error", f"the agent failed ({type(exc).__name__})")
            )
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                self._events.put_nowait(None)

    async def _run_with_reconnects(self) -> None:
        """Run `run_live` until the caller leaves, resuming after upstream failures and
        after the watchdog rotates a stalled connection."""
        failures = 0
        while True:
            started = time.monotonic()
            run = asyncio.create_task(self._run_once(), name=f"{self._name}/run_live")
            self._current_run = run
            try:
                await asyncio.wait({run})
            finally:
                if not run.done():  # this task is being cancelled: end the run with it
                    run.cancel()
                    await asyncio.gather(run, return_exceptions=True)
            if run.cancelled() and self._rotating:
                self._rotating = False
                continue  # rotated by the watchdog: resume with the newest handle at once
            delivered, failure = run.result()
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
            COUNTERS.add("upstream_reconnects")

    async def _run_once(self) -> tuple[bool, UpstreamFailure | None]:
        """One `run_live`: (whether it delivered any event, why it failed or None)."""
        handle = self.handles.handle
        self.started_with.append(handle)
        config = self._run_config_factory(self._modality, handle)
        if self._nudge_on_connect is not None:  # a rotated connection, nudged at once
            self._nudge(self._nudge_on_connect)
            self._nudge_on_connect = None
        delivered = False
        STORE_LISTENER.set(self._store_served)  # this task's context, and ADK's tasks'
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
                    self._watch(event)
                    for ours in translate_event(
                        event,
                        text_mode=self._text_mode,
                        text_from_transcription=self._text_from_transcription,
                    ):
                        await self._events.put(ours)
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            logger.info("run_live ended: %s (%s)", failure.cause, type(exc).__name__)
            return delivered, failure
        return delivered, None

    async def _store_served(self, served: bool) -> None:
        """The session store served (or failed) an append of this call: the caller
        hears of a failure once per outage, as a non-fatal `error`."""
        if served or self.store_failing:
            self.store_failing = not served
            return
        self.store_failing = True
        message = "the conversation store is failing; this call goes on, saved once it is back"
        await self._events.put(AgentError(STORE_ERROR_CODE, message, fatal=False))

    def _watch(self, event: Event) -> None:
        """Tell the stall watchdog what this event says about the model."""
        watchdog = self._watchdog
        if watchdog is None:
            return
        now, signals, recovered = _now(), event_signals(event), watchdog.recovered
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: watchdog sees %s", self._name, signals)
        if signals.output:
            watchdog.output(now, audio_s=signals.audio_s)
        if signals.tool_called:
            watchdog.tool_called()
        if signals.tool_result:
            watchdog.tool_result_sent(now, silent=signals.tool_result_silent)
        if signals.user_turn_ended:
            watchdog.user_turn_ended(now)
        if signals.turn_complete or signals.interrupted:
            watchdog.turn_ended(now, interrupted=signals.interrupted)
        if watchdog.recovered > recovered:
            COUNTERS.add("recovered")
            logger.info("%s: the model answered again after the stall", self._name)
        self._watch_wakeup.set()

    async def _recover(self, recovery: Recovery) -> None:
        """One recovery step from the watchdog: nudge, rotate, or give up."""
        if recovery.new_stall:
            self.stalls.append(recovery.kind)
            COUNTERS.add(f"stalls_{recovery.kind.value}")
            logger.info("%s: the model stalled (%s); nudging it", self._name, recovery.kind)
        if recovery.step is Step.NUDGE:
            self._nudge(recovery.kind)
        elif recovery.step is Step.ROTATE:
            self._rotate(recovery.kind)
        else:
            COUNTERS.add("unrecovered")
            logger.warning("%s: the model stayed silent after a nudge and a new connection "
                           "(%s); waiting for the caller", self._name, recovery.kind)  # fmt: skip

    def _nudge(self, kind: StallKind) -> None:
        """A blank text turn: new user input to a 3.x model, a reply request to others."""
        self.nudges += 1
        COUNTERS.add("nudges")
        self._requests.send_content(types.Content(role="user", parts=[types.Part(text=NUDGE_TEXT)]))

    def _rotate(self, kind: StallKind) -> None:
        """End the current upstream connection; `_run_with_reconnects` resumes with the
        newest handle and the new connection is nudged."""
        run = self._current_run
        if run is None or run.done():
            return
        logger.info("%s: still silent (%s); rotating the upstream connection", self._name, kind)
        self.rotations += 1
        COUNTERS.add("rotations")
        self._rotating = True
        self._nudge_on_connect = kind
        run.cancel()


def _now() -> float:
    return asyncio.get_running_loop().time()


def _count_go_away() -> None:
    COUNTERS.add("upstream_goaways")


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
        """Checks the settings against the agent's live model (`LiveConfigError`,
        `RetiredModelError`) and puts the model's thinking and tool settings on the
        agent (`gateway.adk.live_plan`) before the runner is built."""
        self.session_service = session_service
        self.app_name = app_name
        self.live = live or LiveSettings()
        _adk.watch_go_aways(_count_go_away)
        self.plan = plan_for_agent(agent, self.live)
        apply_to_agent(agent, self.plan)
        self._run_config_factory = run_config_factory or live_run_config_factory(
            self.live, self.plan
        )
        self._runner = Runner(app_name=app_name, agent=agent, session_service=session_service)
        gemini = live_gemini(agent)
        self._check = LiveCheck(gemini, timeout_s=self.live.connect_timeout_s) if gemini else None

    @contextlib.asynccontextmanager
    async def open_session(
        self, *, user_id: str, session_id: str | None, modality: Modality, call_id: str = ""
    ) -> AsyncIterator[AdkAgentSession]:
        await self._check_upstream()
        session_id, handle = await open_conversation(
            self.session_service,
            app_name=self.app_name,
            user_id=user_id,
            session_id=session_id,
            resume=self.live.session_resumption,
            handle_max_age_s=self.live.handle_max_age_s,
        )
        session = AdkAgentSession(
            self._runner,
            user_id,
            session_id,
            modality=modality,
            run_config_factory=self._run_config_factory,
            live=self.live,
            plan=self.plan,
            call_id=call_id,
            resume_handle=handle,
        )
        session.start()
        try:
            yield session
        finally:
            await session.aclose()

    async def ensure_conversation(self, *, user_id: str, session_id: str) -> None:
        """Create `user_id`'s conversation `session_id` unless it exists
        (`ConversationCreator`: the bidi-demo's caller-named sessions)."""
        await ensure_conversation(
            self.session_service, app_name=self.app_name, user_id=user_id, session_id=session_id
        )

    async def probe_upstream(self) -> tuple[UpstreamFailure, str] | None:
        """At start-up: open and close one Live connection; (the failure, what to tell
        the operator) if the Live API refused it, None if it served it or this agent
        does not run on Gemini."""
        if self._check is None:
            return None
        try:
            await self._check.ensure()
        except UpstreamUnavailable as exc:
            return exc.failure, refusal_message(exc.failure, self.plan.model.id)
        return None

    async def _check_upstream(self) -> None:
        """Refuse the call (503, before the answer) when the Live API will not serve it."""
        if self._check is None:
            return
        try:
            await self._check.ensure()
        except UpstreamUnavailable as exc:
            raise AgentUnavailable(refusal_message(exc.failure, self.plan.model.id)) from exc

    async def close(self) -> None:
        await self._runner.close()
