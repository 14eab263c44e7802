"""The `call` span: one call's lifecycle as an OpenTelemetry span with events.

A `Call` (gateway/calls/call.py) makes one `CallTrace` and runs its task in
`CallTrace.context()`, where the call span is current. Every task the call starts
copies that context (contextvars), the agent session's `run_live` task among them,
and ADK's tracer parents its spans (`invoke_agent ...`, `call_llm`, `send_data`,
`execute_tool ...`) on the current context (google/adk/telemetry/_instrumentation.py,
`record_agent_invocation`: `context_api.get_current()`), so they land in the call's
trace, under its span.

With no tracer provider installed (gateway/metrics/tracing.py) the span is the API's
non-recording one and every method returns at its first line.

Span and event names, attributes: docs/observability.md. No session id (the secret
that continues a conversation), no user id, no SDP, no transcript.
Imports opentelemetry's API and the agent seam.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from gateway.agent_api import (
    AgentAudio,
    AgentError,
    AgentEvent,
    AgentInterrupted,
    AgentText,
    Transcript,
    TurnComplete,
)

#: A proxy until a provider is installed, then that provider's tracer.
_TRACER = trace.get_tracer("adk-webrtc-gateway")


class CallTrace:
    """The span of one call, from its accepted offer to the end of its task."""

    def __init__(self, call_id: str, *, mode: str, continued: bool) -> None:
        # A root span: the call outlives the HTTP request that made it.
        self._span = _TRACER.start_span(
            "call",
            context=otel_context.Context(),
            kind=SpanKind.SERVER,
            attributes={
                "gateway.call.id": call_id,
                "gateway.call.mode": mode,
                "gateway.call.continued": continued,
                "gateway.worker.pid": os.getpid(),
            },
        )
        self._on = self._span.is_recording()
        self._heard = False
        self._spoke = False
        self._turns = 0
        self._interruptions = 0

    def context(self) -> contextvars.Context:
        """A context for the call's task, with the call span current in it."""
        context = contextvars.copy_context()
        # Attached for good: this copy belongs to the call's task alone.
        context.run(otel_context.attach, trace.set_span_in_context(self._span))
        return context

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """A child span over a step of set-up (not made current: ADK's spans stay
        children of the call)."""
        if not self._on:
            yield
            return
        parent = trace.set_span_in_context(self._span)
        with _TRACER.start_as_current_span(name, context=parent, end_on_exit=True):
            yield

    def event(self, name: str, **attributes: str | int | float | bool) -> None:
        if self._on:
            self._span.add_event(name, {f"gateway.{k}": v for k, v in attributes.items()})

    def connected(self, route: str) -> None:
        """ICE and DTLS connected over `route` (candidate types, `host/host`)."""
        if self._on:
            self._span.set_attribute("gateway.call.route", route)
            self.event("ice.connected", route=route)

    def caller_audio(self) -> None:
        """Caller audio reached the agent (called for every 20 ms frame)."""
        if self._on and not self._heard:
            self._heard = True
            self.event("caller.audio.first")

    def caller_text(self) -> None:
        """The caller typed a turn."""
        if self._on:
            self.event("caller.text")

    def agent_event(self, event: AgentEvent) -> None:
        """An event from the agent, on its way to the caller."""
        if not self._on:
            return
        if isinstance(event, AgentAudio | AgentText):
            self._agent_output(audio=isinstance(event, AgentAudio))
        elif isinstance(event, Transcript):
            if event.role == "user" and event.final:  # the model heard the caller out
                self.event("caller.turn.ended")
        elif isinstance(event, AgentInterrupted):
            self._interruptions += 1
            self.event("agent.interrupted")
        elif isinstance(event, TurnComplete):
            self.event("agent.turn.complete")
        elif isinstance(event, AgentError):
            self.event("agent.error", code=event.code, fatal=event.fatal)

    def _agent_output(self, *, audio: bool) -> None:
        if audio and not self._spoke:
            self._spoke = True
            self.event("agent.audio.first")

    def turn_reply(self, latency_s: float) -> None:
        """The caller's turn got its first reply, `latency_s` after it reached the
        agent's side (the call measures it once, for /metrics and for this)."""
        if self._on:
            self._turns += 1
            self.event("turn.reply", turn=self._turns, reply_latency_ms=round(latency_s * 1000, 1))

    def hang_up_requested(self, reason: str) -> None:
        self.event("hangup", reason=reason)

    def failed(self, code: str) -> None:
        """The call failed (before or after its answer) with a wire error `code`."""
        if self._on:
            self._span.set_status(Status(StatusCode.ERROR, code))

    def end(self, outcome: str) -> None:
        if self._on:
            self._span.set_attributes(
                {
                    "gateway.call.outcome": outcome,
                    "gateway.call.turns": self._turns,
                    "gateway.call.interruptions": self._interruptions,
                }
            )
        self._span.end()
