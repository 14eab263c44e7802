"""OpenTelemetry traces of a call, sent to a real OTLP/HTTP receiver.

Pins down, with the real gateway process (two workers, scripted agent), a real
aiortc caller and an OTLP/HTTP receiver decoding the exporter's protobuf bodies:
- with `OTEL_EXPORTER_OTLP_ENDPOINT` set, a call with a spoken turn gives one `call`
  span (call id, mode, worker pid, outcome, route; no session id or user id anywhere
  in what was sent), its set-up child span and lifecycle events in order, a turn with
  its reply latency; ADK's own spans of the run (`invoke_agent ...`) are in the same
  trace with the call span as ancestor; all of them ended by hang-up and delivered by
  the flush at exit (the batch delay is longer than the test);
- a call still up at SIGTERM is told `going_away`, hung up after the drain, and its
  spans (events `going_away`, `hangup`) leave in the flush at exit;
- a collector that is down delays exit by the flush's bound (5 s) only, said in one line;
- without any `OTEL_*` setting nothing is installed: a call's spans never leave,
  even to the OTLP default endpoint (localhost:4318), where the receiver listens;
- the environment variables are read as the OpenTelemetry spec says (unset, `none`,
  `console`, an unsupported protocol or exporter stops start-up with one line);
- the redacting exporter drops session and user ids and keeps everything else.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.errors import StartupError
from gateway.metrics.tracing import RedactingExporter, exporters_from_environment
from tests.support.gateway_process import GatewayProcess, free_port, serving
from tests.support.peers import HeadlessCaller, assert_answered

SCRIPTED = "gateway.agents.scripted:root_agent"
#: The OTLP/HTTP default endpoint (OTel spec, "OTLP Exporter": localhost:4318).
OTLP_DEFAULT_PORT = 4318


@dataclass
class Receiver:
    """What an OTLP/HTTP collector got: every body as sent, and its spans."""

    url: str
    bodies: list[bytes] = field(default_factory=list)
    spans: list[tuple[Mapping[str, Any], Span]] = field(default_factory=list)

    def named(self, name: str) -> list[Span]:
        return [span for _, span in self.spans if span.name == name]


@contextlib.asynccontextmanager
async def otlp_receiver(port: int = 0) -> AsyncIterator[Receiver]:
    """POST /v1/traces with protobuf bodies (OTLP/HTTP, binary protobuf encoding)."""
    receiver = Receiver("")

    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        body = await request.read()
        receiver.bodies.append(body)
        message = ExportTraceServiceRequest.FromString(body)
        for resource_spans in message.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                receiver.spans.extend((resource, span) for span in scope_spans.spans)
        reply = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{bound}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    kvs: list[KeyValue] = list(pairs)
    return {kv.key: value(kv.value) for kv in kvs}


def gateway_env(**otel: str) -> dict[str, str]:
    """This process's environment without any OTEL_* or ADK telemetry setting, plus `otel`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ADK_CAPTURE"))}
    return {**env, **otel}


@contextlib.asynccontextmanager
async def run_gateway(
    tmp_path: Path, env: Mapping[str, str], workers: int, *args: str
) -> AsyncIterator[GatewayProcess]:
    port = free_port()
    async with serving(
        "--agent", SCRIPTED, "--session-url", "memory://", "--workers", str(workers), *args,
        env=env, log=tmp_path / f"gateway-{port}.log", workers=workers, port=port,
    ) as gateway:  # fmt: skip
        yield gateway


async def spoken_turn_then_hang_up(gateway: GatewayProcess) -> dict[str, Any]:
    """A call: the caller speaks, hears the scripted agent's tone, hangs up (DELETE).
    Returns the data channel's `session` message."""
    caller = HeadlessCaller()
    try:
        async with aiohttp.ClientSession() as http:
            dialled = await caller.dial(http, gateway.base)
            assert dialled.status == 201, dialled.body
            await caller.wait_connected(20)
            session = await assert_answered(caller)
            assert await caller.hang_up(http, gateway.base) == 204
            return session
    finally:
        await caller.close()


def ancestors(span: Span, by_id: Mapping[bytes, Span]) -> list[Span]:
    chain = []
    while span.parent_span_id and span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        chain.append(span)
    return chain


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_call_is_traced_with_adk_spans_under_it(tmp_path: Path) -> None:
    async with otlp_receiver() as receiver:
        env = gateway_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
            OTEL_SERVICE_NAME="gw-test",
            # Longer than the test: what arrives was sent by the flush at exit.
            OTEL_BSP_SCHEDULE_DELAY="600000",
        )
        async with run_gateway(tmp_path, env, workers=2) as gateway:
            session = await spoken_turn_then_hang_up(gateway)
            worker_pids = {w["pid"] for w in (await gateway.get("/stats"))["workers"]}
        # Stopped (SIGTERM): every worker flushed its spans before exiting.
        [call] = receiver.named("call")
        resource = next(r for r, s in receiver.spans if s is call)
        assert resource["service.name"] == "gw-test"
        attrs = attributes(call.attributes)
        assert attrs["gateway.call.id"] == session["call_id"]
        assert attrs["gateway.call.mode"] == "audio"
        assert attrs["gateway.call.continued"] is False
        assert attrs["gateway.worker.pid"] in worker_pids
        assert attrs["gateway.call.outcome"] == "caller hung up"
        assert attrs["gateway.call.route"].startswith("host/")  # host/prflx: checks came first
        assert attrs["gateway.call.turns"] >= 1
        assert call.kind == Span.SPAN_KIND_SERVER
        assert not call.parent_span_id  # a root: the call outlives its HTTP request

        names = [event.name for event in call.events]
        order = ["agent.session.opened", "answer.ready", "ice.connected", "caller.audio.first",
                 "caller.turn.ended", "agent.audio.first", "turn.reply", "hangup"]  # fmt: skip
        assert [n for n in names if n in order] == order, names
        turn = next(e for e in call.events if e.name == "turn.reply")
        assert attributes(turn.attributes)["gateway.reply_latency_ms"] > 0
        hangup = next(e for e in call.events if e.name == "hangup")
        assert attributes(hangup.attributes) == {"gateway.reason": "caller hung up"}
        assert all(call.start_time_unix_nano <= e.time_unix_nano <= call.end_time_unix_nano
                   for e in call.events)  # fmt: skip

        [negotiate] = receiver.named("negotiate")
        assert negotiate.parent_span_id == call.span_id

        in_trace = [span for _, span in receiver.spans if span.trace_id == call.trace_id]
        by_id = {span.span_id: span for span in in_trace}
        adk = [span for span in in_trace if span.name.startswith("invoke_agent")]
        assert adk, sorted({span.name for _, span in receiver.spans})
        for span in adk:
            assert call in ancestors(span, by_id)
            assert span.end_time_unix_nano <= call.end_time_unix_nano  # ended by hang-up
            assert "gen_ai.conversation.id" not in attributes(span.attributes)

        # The session id continues the conversation: it is in nothing that was sent,
        # nor is the user id attribute.
        secret = session["session_id"].encode()
        assert receiver.bodies
        assert not any(secret in body for body in receiver.bodies)
        for _, span in receiver.spans:
            assert not {"user.id", "gcp.vertex.agent.session_id"} & set(attributes(span.attributes))


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_without_otel_settings_nothing_is_exported(tmp_path: Path) -> None:
    # Where an exporter installed by default would send: the OTLP default endpoint.
    with socket.socket() as probe:
        free = probe.connect_ex(("127.0.0.1", OTLP_DEFAULT_PORT)) != 0
    assert free, f"port {OTLP_DEFAULT_PORT} is in use on this machine"
    async with otlp_receiver(OTLP_DEFAULT_PORT) as receiver:
        env = gateway_env(OTEL_BSP_SCHEDULE_DELAY="100")  # no exporter configured
        async with run_gateway(tmp_path, env, workers=1) as gateway:
            await spoken_turn_then_hang_up(gateway)
        assert receiver.bodies == []
        assert "tracing: exporting spans" not in gateway.output()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_call_cut_by_a_drain_is_exported_at_exit(tmp_path: Path) -> None:
    async with otlp_receiver() as receiver:
        env = gateway_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY="600000"
        )
        caller = HeadlessCaller()
        try:
            async with run_gateway(tmp_path, env, 1, "--drain-timeout", "1") as gateway:
                async with aiohttp.ClientSession() as http:
                    assert (await caller.dial(http, gateway.base)).status == 201
                session = await caller.wait_message(type="session", limit_s=20)
                await caller.wait_connected(20)
            # SIGTERM with the call up: drained (told, 1 s), hung up, then flushed.
            told = await caller.wait_message(type="going_away", limit_s=5)
        finally:
            await caller.close()
        assert told["deadline_s"] <= 1
        [call] = receiver.named("call")
        attrs = attributes(call.attributes)
        assert attrs["gateway.call.id"] == session["call_id"]
        assert attrs["gateway.call.outcome"] == "gateway shutting down"
        events = {event.name: attributes(event.attributes) for event in call.events}
        assert events["going_away"] == {"gateway.deadline_s": 1.0}
        assert events["hangup"] == {"gateway.reason": "gateway shutting down"}
        [adk] = [s for _, s in receiver.spans if s.name.startswith("invoke_agent")]
        assert adk.parent_span_id == call.span_id
        assert adk.end_time_unix_nano <= call.end_time_unix_nano


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_collector_that_is_down_costs_a_bounded_wait_at_exit(tmp_path: Path) -> None:
    env = gateway_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",  # nothing listens
        OTEL_BSP_SCHEDULE_DELAY="600000",  # the call's spans wait for the flush at exit
    )
    async with run_gateway(tmp_path, env, workers=1) as gateway:
        caller = HeadlessCaller()
        try:
            async with aiohttp.ClientSession() as http:
                assert (await caller.dial(http, gateway.base)).status == 201
                await caller.wait_message(type="session", limit_s=20)
                assert await caller.hang_up(http, gateway.base) == 204
        finally:
            await caller.close()
    # Stopped with SIGTERM within `serving`'s 30 s (the exporter alone retries for
    # 10 s), cleanly, saying what was lost.
    assert gateway.process.returncode == 0
    assert "spans not exported within 5 s were lost" in gateway.output()


def test_the_environment_configures_exporters() -> None:
    assert exporters_from_environment({}) == []
    assert exporters_from_environment({"OTEL_BSP_SCHEDULE_DELAY": "100"}) == []
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    [otlp] = exporters_from_environment(endpoint)
    assert type(otlp).__name__ == "OTLPSpanExporter"
    traces_only = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"}
    assert len(exporters_from_environment(traces_only)) == 1
    assert exporters_from_environment({**endpoint, "OTEL_TRACES_EXPORTER": "none"}) == []
    assert exporters_from_environment({**endpoint, "OTEL_SDK_DISABLED": "true"}) == []
    [console] = exporters_from_environment({"OTEL_TRACES_EXPORTER": "console"})
    assert isinstance(console, ConsoleSpanExporter)
    assert len(exporters_from_environment({"OTEL_TRACES_EXPORTER": "otlp,console"})) == 2
    with pytest.raises(StartupError, match="gRPC"):
        exporters_from_environment({**endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(StartupError, match="zipkin"):
        exporters_from_environment({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_session_and_user_ids_are_redacted() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()  # not the global one
    provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(memory)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("invoke_agent a") as span:
        span.set_attributes({"gen_ai.conversation.id": "s3cret", "user.id": "alice"})
        span.set_attribute("gen_ai.agent.name", "a")
        span.add_event("e", {"gcp.vertex.agent.session_id": "s3cret", "kept": 1})
    with tracer.start_as_current_span("plain") as span:
        span.set_attribute("gateway.call.id", "c1")
    redacted, plain = memory.get_finished_spans()
    assert dict(redacted.attributes or {}) == {"gen_ai.agent.name": "a"}
    assert [dict(e.attributes or {}) for e in redacted.events] == [{"kept": 1}]
    assert redacted.name == "invoke_agent a"
    assert redacted.end_time is not None
    assert dict(plain.attributes or {}) == {"gateway.call.id": "c1"}
    provider.shutdown()
