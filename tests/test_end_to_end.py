"""Whole gateway, real parts: HTTP, a real aiortc caller, ADK's runner, a live model.

Pins down:
- the caller's speech is heard by the live model (user transcript on the data
  channel), answered with audio the caller hears, then `turn_complete`;
- barge-in through the whole stack: speech during an answer gives `interrupted`
  and the caller's audio falls silent;
- `python -m gateway` starts a server that a headless aiortc peer can call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from google.adk.agents import Agent
from google.adk.sessions import InMemorySessionService

import gateway.models.scripted  # noqa: F401
from gateway.agent_bridge import AdkAgentConnector
from tests.support.gateway_process import serving
from tests.support.peers import HeadlessCaller, live_call, tone_pcm


@pytest.fixture
async def adk_connector() -> AsyncIterator[AdkAgentConnector]:
    agent = Agent(name="e2e_agent", model="scripted-live", instruction="Be brief.")
    connector = AdkAgentConnector(agent, InMemorySessionService(), app_name="e2e")
    yield connector
    await connector.close()


async def test_speech_in_agent_audio_out(
    adk_connector: AdkAgentConnector, start_gateway: Callable[..., Any]
) -> None:
    client = await start_gateway(adk_connector)
    async with live_call(client) as (caller, location):
        await caller.wait_message(type="session")
        caller.mic.play_pcm(tone_pcm(0.8))
        user = await caller.wait_message(type="transcript", role="user", final=True)
        assert "speech" in user["text"]
        heard_from = len(caller.frames)
        await caller.wait_message(type="turn_complete")
        await asyncio.sleep(1.0)
        reply = caller.frames[heard_from:]
        assert sum(f.rms > 1000 for f in reply) >= 50  # most of the 1.5 s answer
        agent = await caller.wait_message(type="transcript", role="agent")
        assert agent["text"].startswith("I heard")
        assert (await client.delete(location)).status == 204


async def test_barge_in_through_the_stack(
    adk_connector: AdkAgentConnector, start_gateway: Callable[..., Any]
) -> None:
    client = await start_gateway(adk_connector)
    async with live_call(client) as (caller, location):
        await caller.wait_channel_open()
        caller.send({"type": "text", "text": "tell me something long"})
        async with asyncio.timeout(10):
            while sum(f.rms > 1000 for f in caller.frames[-10:]) < 8:
                await asyncio.sleep(0.05)
        caller.mic.play_pcm(tone_pcm(0.3))
        await caller.wait_message(type="interrupted")
        cut_at = caller.frames[-1].at
        # The model answers the barge-in itself ~0.5 s later: until then, silence.
        await caller.wait_message(type="transcript", role="user", final=True)
        window = [f for f in caller.frames if cut_at + 0.15 < f.at < cut_at + 0.4]
        assert len(window) >= 10
        assert all(f.rms < 50 for f in window)  # the 6 s answer stopped
        await caller.wait_message(type="turn_complete")
        assert (await client.delete(location)).status == 204


async def test_python_m_gateway_serves_calls(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    caller = HeadlessCaller()
    try:
        async with (
            serving("--agent", "gateway.agents.default:root_agent", log=log) as gateway,
            aiohttp.ClientSession(gateway.base) as http,
        ):
            dialed = await caller.dial(http, gateway.base)
            assert dialed.status == 201
            await caller.wait_connected()
            await caller.wait_channel_open()
            caller.send({"type": "text", "text": "hello"})
            await caller.wait_message(type="turn_complete", limit_s=20)
            assert sum(f.rms > 1000 for f in caller.frames) >= 20
            async with http.delete(caller.location or "") as response:
                assert response.status == 204
        returncode = gateway.process.returncode
    finally:
        await caller.close()
    output = log.read_text()
    assert returncode in (0, -15), output
    assert "accepted" in output
    assert "ended" in output


async def test_scripted_agent_module_serves_through_the_runner(
    start_gateway: Callable[..., Any],
) -> None:
    """The benchmarks' `--agent gateway.agents.scripted:root_agent` answers a text turn."""
    from gateway.agents.scripted import root_agent

    connector = AdkAgentConnector(root_agent, InMemorySessionService(), app_name="bench")
    client = await start_gateway(connector)
    async with live_call(client, query="?mode=text") as (caller, _):
        await caller.wait_channel_open()
        caller.send({"type": "text", "text": "hello"})
        await caller.wait_message(type="text")  # streamed in pieces
        await caller.wait_message(type="turn_complete")
        streamed = "".join(m["text"] for m in caller.messages if m.get("type") == "text")
        assert streamed.startswith("You said: hello")
    await connector.close()


async def test_start_up_objects_are_kept_from_the_garbage_collector() -> None:
    """A full collection over ADK's start-up heap stalls every call at once (~45 ms)."""
    import gc

    from aiohttp.test_utils import TestClient, TestServer

    from gateway.agents.scripted import root_agent
    from gateway.app import add_adk_lifecycle, create_app
    from tests.conftest import gateway_settings

    connector = AdkAgentConnector(root_agent, InMemorySessionService(), app_name="gc")
    app = create_app(gateway_settings(), connector)
    add_adk_lifecycle(app, connector)
    gc.unfreeze()
    client = TestClient(TestServer(app))
    try:
        await client.start_server()
        assert gc.get_freeze_count() > 50_000  # ADK, pydantic, aiortc, google-genai
    finally:
        await client.close()
        gc.unfreeze()
