"""No live session outlives its call: every way a call ends closes its upstream.

Gemini counts open Live sessions against a project quota (1,000 concurrent on
Vertex AI; tiered on the Gemini API), so a session left open by a call that ended is
a leak with a price. For each path that ends a call, the double (playing
gemini-3.8-live) must see the call's connection closed, within seconds:

- the caller hangs up (`DELETE`);
- media never connects (ICE fails: the caller never applies the answer);
- the agent fails (a tool raises in a blocking call: a fatal `error` event);
- the gateway shuts down with the call up;
- the worker process that owns the call is killed (SIGKILL: the kernel closes its
  sockets, so the service sees the session end even though no code ran).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from google.adk.agents import Agent
from google.adk.models.google_llm import Gemini
from google.adk.sessions import InMemorySessionService

from gateway.adk.live_config import LiveSettings
from gateway.agent_bridge import AdkAgentConnector
from tests.gemini.conftest import GOOD_KEY
from tests.support.gateway_process import serving
from tests.support.live_api_double import LiveApiDouble, LiveConnection, tool_calling
from tests.support.peers import HeadlessCaller, live_call, tone_pcm

CLOSE_WITHIN_S = 8.0


def broken_tool(city: str) -> dict[str, str]:
    """A tool that fails."""
    raise RuntimeError(f"no weather for {city}")


@pytest.fixture
async def connector(
    gemini_env: LiveApiDouble, live_model_id: str
) -> AsyncIterator[AdkAgentConnector]:
    agent = Agent(
        name="gemini_agent",
        model=Gemini(model=live_model_id),
        instruction="Be brief.",
        tools=[broken_tool],
    )
    live = LiveSettings(model=live_model_id, tool_behavior="blocking", connect_timeout_s=1.5)
    built = AdkAgentConnector(agent, InMemorySessionService(), app_name="t", live=live)
    yield built
    await built.close()


async def call_connection(double: LiveApiDouble) -> LiveConnection:
    """The call's session at the double (connection 0 is the pre-answer check)."""
    conn = await double.wait_connections(2)
    assert not conn.closed.is_set()
    return conn


async def closed(conn: LiveConnection) -> None:
    await asyncio.wait_for(conn.closed.wait(), CLOSE_WITHIN_S)


async def test_hang_up(
    gemini_env: LiveApiDouble, connector: AdkAgentConnector, start_gateway: Callable[..., Any]
) -> None:
    client = await start_gateway(connector)
    async with live_call(client) as (_, location):
        conn = await call_connection(gemini_env)
        assert (await client.delete(location)).status == 204
        await closed(conn)


async def test_media_that_never_connects(
    gemini_env: LiveApiDouble, connector: AdkAgentConnector, start_gateway: Callable[..., Any]
) -> None:
    client = await start_gateway(connector, call_setup_timeout_s=1.0)
    caller = HeadlessCaller()
    try:
        response = await client.post(
            "/calls", data=await caller.offer(), headers={"Content-Type": "application/sdp"}
        )
        assert response.status == 201  # ... and the caller never applies the answer
        await closed(await call_connection(gemini_env))
    finally:
        await caller.close()


async def test_agent_failure(
    gemini_env: LiveApiDouble, connector: AdkAgentConnector, start_gateway: Callable[..., Any]
) -> None:
    gemini_env.default_behaviour = tool_calling("broken_tool", {"city": "Rome"}, str)
    client = await start_gateway(connector)
    async with live_call(client) as (caller, _):
        conn = await call_connection(gemini_env)
        caller.mic.play_pcm(tone_pcm(0.6))
        error = await caller.wait_message(type="error", fatal=True)
        assert error["code"] == "agent_error"
        await closed(conn)


async def test_gateway_shutdown(
    gemini_env: LiveApiDouble, connector: AdkAgentConnector, start_gateway: Callable[..., Any]
) -> None:
    client: TestClient[Any, Any] = await start_gateway(connector)
    async with live_call(client):
        conn = await call_connection(gemini_env)
        await client.close()  # the app's shutdown hangs up every call
        await closed(conn)


async def test_worker_death(gemini_env: LiveApiDouble, live_model_id: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "GOOGLE_API_KEY": GOOD_KEY,
        "GATEWAY_GEMINI_MODEL": live_model_id,
        "GOOGLE_GEMINI_BASE_URL": gemini_env.base_url,
        "SSL_CERT_FILE": str(gemini_env.cert.cert_path),
    }
    env.pop("GOOGLE_GENAI_USE_VERTEXAI", None)
    async with (
        serving(
            "--workers", "2", "--session-url", "memory://",
            env=env, log=tmp_path / "gateway.log", workers=2,
        ) as gateway,
        aiohttp.ClientSession() as http,
    ):  # fmt: skip
        caller = HeadlessCaller()
        try:
            offer = await caller.offer()
            async with http.post(
                f"{gateway.base}/calls", data=offer, headers={"Content-Type": "application/sdp"}
            ) as response:
                assert response.status == 201, await response.text()
                owner = int(response.headers["X-Gateway-Worker"])
                await caller.accept(await response.text())
            await caller.wait_connected()
            async with asyncio.timeout(5):  # the call's session (start-up checks closed)
                while (
                    len(open_now := [c for c in gemini_env.connections if not c.closed.is_set()])
                    != 1
                ):
                    await asyncio.sleep(0.05)
            os.kill(owner, signal.SIGKILL)
            await closed(open_now[0])
        finally:
            await caller.close()
