"""Drain and readiness in the app itself (`create_app`, served in-process on loopback).

Pins down:
- both WebSocket protocols get their `going_away` when the gateway drains: the
  seed's socket the data channel's JSON, the bidi-demo's an ADK `Event` whose
  `customMetadata` carries it (it validates as `google.adk.events.Event`); sockets
  still open at the deadline close with 1001; a new socket gets 503 `draining`
  with Retry-After before any upgrade, counted in `/metrics` as refused;
- `/readyz` is 503 `unavailable`, naming the check, when the session store does not
  answer (ADK's own `DatabaseSessionService` against a port nothing listens on),
  without the store's URL or password in the answer; 503 `draining` once drained;
- the readiness seam: a check that hangs is a failed check, bounded in time;
  `starting` while fewer workers serve than the gateway has, `draining` when any
  worker drains.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.adk.agents import Agent
from google.adk.events import Event
from google.adk.sessions import DatabaseSessionService
from prometheus_client.parser import text_string_to_metric_families

import gateway.models.scripted  # noqa: F401  (registers scripted-live)
from gateway.agent_bridge import AdkAgentConnector
from gateway.app import add_store_readiness, create_app
from gateway.calls.service import WorkerLoad
from gateway.ops.readiness import CHECK_TIMEOUT_S, READINESS_KEY, Readiness
from tests.conftest import gateway_settings
from tests.support.fakes import FakeAgentConnector
from tests.support.gateway_process import free_port

pytestmark = pytest.mark.timeout(60)


async def next_json(ws: aiohttp.ClientWebSocketResponse, limit_s: float = 5) -> dict[str, Any]:
    message = await ws.receive(timeout=limit_s)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    body: dict[str, Any] = json.loads(message.data)
    return body


def refused_draining(metrics_text: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "gateway_calls_refused_total" and sample.labels == {
                "reason": "draining"
            }:
                return sample.value
    raise AssertionError("no gateway_calls_refused_total{reason=draining}")


async def test_both_websocket_protocols_are_told_then_closed_at_the_deadline(
    start_gateway: Callable[..., Any],
) -> None:
    client: TestClient[Any, Any] = await start_gateway(FakeAgentConnector(), drain_timeout=1.5)
    seed = await client.ws_connect("/ws/alice?is_audio=false&events=1")
    bidi = await client.ws_connect("/ws/bob/conversation-7")
    try:
        greeting = await next_json(seed)
        assert greeting["type"] == "session"
        await asyncio.sleep(0.2)  # the bidi-demo sends nothing until asked; let it open
        async with client.get("/metrics") as response:
            refused_before = refused_draining(await response.text())
        async with client.post("/admin/drain") as response:
            assert response.status == 202
        told = await next_json(seed)
        assert told["type"] == "going_away"
        assert told["session_id"] == greeting["session_id"]
        assert 0 < told["deadline_s"] <= 1.5
        event = await next_json(bidi)
        Event.model_validate(event)  # an ADK Event, as the demo's client expects
        assert event["customMetadata"]["type"] == "going_away"
        assert event["customMetadata"]["session_id"] == "conversation-7"
        async with client.get("/ws/carol?is_audio=false") as response:
            assert response.status == 503  # no upgrade
            assert response.headers["Retry-After"] == "1"
            assert (await response.json(content_type=None))["code"] == "draining"
        async with client.get("/metrics") as response:
            assert refused_draining(await response.text()) == refused_before + 1
        for ws in (seed, bidi):  # the deadline: closed "going away"
            closing = await ws.receive(timeout=10)
            assert closing.type is aiohttp.WSMsgType.CLOSE
            assert closing.data == 1001
        async with client.get("/readyz") as response:
            assert response.status == 503
            assert response.content_type == "application/problem+json"
            assert (await response.json(content_type=None))["state"] == "draining"
    finally:
        await seed.close()
        await bidi.close()


async def test_readyz_is_503_while_the_session_store_does_not_answer() -> None:
    url = f"postgresql+asyncpg://gw:secret-pw@127.0.0.1:{free_port()}/sessions"
    service = DatabaseSessionService(url)
    connector = AdkAgentConnector(
        Agent(name="ready_agent", model="scripted-live"), service, app_name="ready"
    )
    app = create_app(gateway_settings(), connector)
    add_store_readiness(app, connector)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        async with client.get("/readyz") as response:
            assert response.status == 503
            text = await response.text()
        body = json.loads(text)
        assert body["state"] == body["code"] == "unavailable"
        assert body["checks"]["session_store"].startswith("the session store failed")
        assert any(reason.startswith("session_store:") for reason in body["reasons"])
        assert "secret-pw" not in text
        assert str(url.split("@")[1]) not in text
    finally:
        await client.close()
        await connector.close()
        await service.close()


async def test_a_check_that_hangs_fails_within_its_bound(
    start_gateway: Callable[..., Any],
) -> None:
    client: TestClient[Any, Any] = await start_gateway(FakeAgentConnector())
    hung = asyncio.Event()

    async def never_answers() -> None:
        await hung.wait()

    client.app[READINESS_KEY].add_check("stuck", never_answers)
    async with asyncio.timeout(CHECK_TIMEOUT_S + 5), client.get("/readyz") as response:
        assert response.status == 503
        body = await response.json(content_type=None)
    assert body["state"] == "unavailable"
    assert body["checks"]["stuck"].startswith("no answer within")


async def test_readiness_over_workers() -> None:
    workers = [WorkerLoad(101, 0)]
    readiness = Readiness(lambda: workers, expected_workers=2)
    readiness.started = True
    status, reasons, _ = await readiness.evaluate()
    assert (status, reasons) == ("starting", ["1 of 2 workers serve"])
    workers.append(WorkerLoad(102, 3))
    assert (await readiness.evaluate())[0] == "ready"
    workers[1] = WorkerLoad(102, 3, draining=True)  # a sibling drains: so does the gateway
    assert (await readiness.evaluate())[0] == "draining"
