"""OpenTelemetry tracing for one serving process, when an exporter is configured.

Configured by OpenTelemetry's standard environment variables only (docs/observability.md):
an exporter is configured when `OTEL_TRACES_EXPORTER` names one (`otlp`, `console`) or,
with it unset, when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
is set. Then `add_tracing` installs, in each process that serves calls (the one
process, or each worker: they are started anew, never forked from a process that had
a provider), an SDK `TracerProvider` whose spans go through a `BatchSpanProcessor`
(a background thread; `OTEL_BSP_*`) to the OTLP/HTTP exporter (`OTEL_EXPORTER_OTLP_*`),
and flushes it when the app stops, after the calls are hung up. Otherwise nothing is
installed: the API's tracers stay no-ops and no connection is ever made.

Everything exported first goes through `RedactingExporter`: ADK stamps its spans
with the ADK session id (`gen_ai.conversation.id`, `gcp.vertex.agent.session_id`),
which is the secret a caller continues its conversation with, and may stamp the user
id; those attributes are dropped. ADK's copies of prompts, replies and tool arguments
(transcripts: personal data) are off unless the operator sets
`ADK_CAPTURE_MESSAGE_CONTENT_IN_SPANS=true` (ADK's own default is on).

Imports opentelemetry (API, SDK, OTLP/HTTP exporter), aiohttp (the app's lifecycle)
and `gateway.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Mapping, Sequence

from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.util.types import Attributes

from gateway.errors import StartupError

logger = logging.getLogger(__name__)

#: `service.name` unless `OTEL_SERVICE_NAME` (or `OTEL_RESOURCE_ATTRIBUTES`) names one.
DEFAULT_SERVICE_NAME = "adk-webrtc-gateway"
#: The one OTLP transport installed (`opentelemetry-exporter-otlp-proto-http`); the
#: spec's default for SDKs too (OTel spec, "OTLP Exporter Configuration": protocol).
OTLP_PROTOCOL = "http/protobuf"
#: Attributes never exported: the ADK session id (ADK's `trace_agent_invocation` and
#: `trace_call_llm` set the first two) is what continues a conversation; user ids are
#: personal data (google/adk/telemetry/tracing.py, google-adk 2.x).
REDACTED_ATTRIBUTES = frozenset(
    {"gen_ai.conversation.id", "gcp.vertex.agent.session_id", "session.id", "user.id", "enduser.id"}
)
#: ADK's switch for prompts, replies and tool arguments on its spans (default on).
ADK_CONTENT_ENV = "ADK_CAPTURE_MESSAGE_CONTENT_IN_SPANS"
#: How long the last spans get to leave when the process stops.
FLUSH_TIMEOUT_S = 5.0


def exporters_from_environment(environ: Mapping[str, str] | None = None) -> list[SpanExporter]:
    """The exporters OpenTelemetry's environment variables ask for; [] when none is
    configured. A value this gateway cannot honour is a `StartupError`."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in names if n]
    if not names:  # unset: on only when an OTLP endpoint is given (opt-in, no default host)
        endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        names = ["otlp"] if any(env.get(name) for name in endpoints) else []
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "otlp":
            exporters.append(_otlp_exporter(env))
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name != "none":
            raise StartupError(
                f"OTEL_TRACES_EXPORTER={name}: this gateway exports traces with "
                "'otlp' (OTLP over HTTP), 'console' or 'none'"
            )
    return exporters


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter:
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", OTLP_PROTOCOL
    )
    if protocol.strip() != OTLP_PROTOCOL:
        raise StartupError(
            f"OTLP protocol {protocol!r}: this gateway sends traces as {OTLP_PROTOCOL} "
            "(a collector's port 4318); gRPC is not installed"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*


class RedactingExporter(SpanExporter):
    """Exports spans without `REDACTED_ATTRIBUTES` (on the span and its events)."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter
        self._shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([_redacted(span) for span in spans])

    def shutdown(self) -> None:
        """Idempotent: `add_tracing` may shut it down first to end an export that
        retries a collector which is down."""
        if not self._shut_down:
            self._shut_down = True
            self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


def _redacted(span: ReadableSpan) -> ReadableSpan:
    """`span`, or a copy without the redacted attributes (as the SDK builds the
    `ReadableSpan` it hands to processors)."""
    if not _has_redacted(span.attributes) and not any(
        _has_redacted(e.attributes) for e in span.events
    ):
        return span
    events = [
        Event(e.name, _without_redacted(e.attributes), timestamp=e.timestamp) for e in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_without_redacted(span.attributes),
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _has_redacted(attributes: Attributes) -> bool:
    return bool(attributes) and not REDACTED_ATTRIBUTES.isdisjoint(attributes or ())


def _without_redacted(attributes: Attributes) -> Attributes:
    return {k: v for k, v in (attributes or {}).items() if k not in REDACTED_ATTRIBUTES}


class Tracing:
    """The installed provider and its exporters, to shut down at exit."""

    def __init__(self, exporters: Sequence[SpanExporter]) -> None:
        attributes = {} if _names_service() else {SERVICE_NAME: DEFAULT_SERVICE_NAME}
        # No atexit handler: `shut_down` is bounded, the SDK's would wait up to 30 s.
        self.provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
        self.exporters = [RedactingExporter(exporter) for exporter in exporters]
        for exporter in self.exporters:
            self.provider.add_span_processor(BatchSpanProcessor(exporter))

    async def shut_down(self, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        """Export what is queued and stop, within `timeout_s`: the SDK's flush ignores
        its timeout (opentelemetry-python issue 4568) and its exporter retries a
        collector that is down for 10 s (OTEL_EXPORTER_OTLP_TIMEOUT), so the blocking
        shutdown runs in a thread of its own and, past `timeout_s`, the exporters are
        shut down under it, which ends their retries (the rest is lost)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        def shut_down() -> None:
            try:
                self.provider.shutdown()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                    loop.call_soon_threadsafe(finished)

        # A daemon thread, never holding the process up (asyncio's executor would).
        threading.Thread(target=shut_down, name="otel-shutdown", daemon=True).start()
        try:
            await asyncio.wait_for(done, timeout_s)
        except TimeoutError:
            logger.warning("tracing: spans not exported within %.0f s were lost", timeout_s)
            for exporter in self.exporters:
                exporter.shutdown()


def install(exporters: Sequence[SpanExporter]) -> Tracing | None:
    """Make an SDK provider exporting to `exporters` (redacted, batched) the global
    one; None if another provider is installed already (it stays)."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        logger.warning("a tracer provider is installed already; not installing another")
        return None
    os.environ.setdefault(ADK_CONTENT_ENV, "false")  # transcripts stay out of spans
    tracing = Tracing(exporters)
    trace.set_tracer_provider(tracing.provider)
    return tracing


def _names_service() -> bool:
    given = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    return bool(os.environ.get("OTEL_SERVICE_NAME")) or f"{SERVICE_NAME}=" in given


def add_tracing(app: web.Application) -> None:
    """Trace this app's calls if OpenTelemetry's environment configures an exporter
    (checked now: a value it cannot honour stops start-up); the provider is
    installed when the app starts and flushed after everything else stopped."""
    exporters = exporters_from_environment()
    if not exporters:
        return

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        tracing = install(exporters)
        if tracing is not None:
            logger.info("tracing: exporting spans (%s)", ", ".join(_describe(exporters)))
        yield
        if tracing is not None:
            await tracing.shut_down()

    app.cleanup_ctx.insert(0, lifecycle)  # cleaned up last: after the calls end


def _describe(exporters: Sequence[SpanExporter]) -> list[str]:
    """Exporter names for the start-up line; no endpoint (it may carry credentials)."""
    return ["console" if isinstance(e, ConsoleSpanExporter) else "otlp" for e in exporters]
