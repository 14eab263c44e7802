"""The Live API's goAway counted in `/metrics` (`gateway_upstream_goaways_total`).

Real parts: ADK's Runner with its `Gemini` model and the real google-genai client
against the Live API double, a headless aiortc caller through the whole gateway.
ADK reconnects on goAway by itself and yields nothing, so the gateway counts its
log record (`gateway/adk/_adk.py`, seam 3, guarded by tests/test_seams.py). Pins
down: one goAway mid-call moves the counter by exactly one, also with the
gateway's logging at WARNING (ADK's INFO line is still heard, and not printed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.agent_bridge import AdkAgentConnector
from tests.support.live_api_double import LiveApiDouble, LiveConnection
from tests.support.peers import live_call, tone_pcm


async def go_aways(client: Any) -> float:
    async with client.get("/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gateway_upstream_goaways_total":
                return float(sample.value)
    raise AssertionError("no gateway_upstream_goaways_total")


async def test_a_go_away_is_counted(
    gemini_env: LiveApiDouble,
    gemini_connector: AdkAgentConnector,
    start_gateway: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def first(conn: LiveConnection) -> None:
        await conn.issue_handle()
        await conn.wait_user_turn()
        await conn.go_away("10s")
        await conn.closed.wait()

    gemini_env.behaviours[1] = first
    client = await start_gateway(gemini_connector)
    before = await go_aways(client)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        async with live_call(client) as (caller, _):
            await caller.wait_message(type="session", limit_s=10)
            caller.mic.play_pcm(tone_pcm(0.6))
            await gemini_env.wait_connections(3)  # ADK reconnected after the goAway
            async with asyncio.timeout(5):
                while await go_aways(client) < before + 1:
                    await asyncio.sleep(0.05)
    finally:
        root.setLevel(level)
    assert await go_aways(client) == before + 1
    assert not [r for r in caplog.records if r.getMessage().startswith("Received go away")]
