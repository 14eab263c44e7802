"""Real WebRTC calls to the Live API double playing each current model generation.

Real parts only: HTTP signaling, a headless aiortc caller over loopback, ADK's Runner
with its `Gemini` model and the real google-genai client, speaking TLS websockets to
the double as `gemini-3.8-live` and as `gemini-3.1-flash-live-preview`. (Connection 0
at the double is the pre-answer check; connection 1 is the call's.)

Pins down, for both generations:
- a voice call: the caller's speech is transcribed once, the answer is heard and
  transcribed;
- a text-mode call on these AUDIO-only models: the session asks for AUDIO (no 1007),
  the typed question gets streamed `text` events ending in the whole answer, and the
  caller hears no speech;
- a function tool: declared as the generation calls it (NON_BLOCKING with WHEN_IDLE
  scheduling on 3.8, blocking on 3.1), run by ADK, its result spoken and transcribed;
- each stall kind (no reply, empty turn, silence after a tool result, a reply cut
  mid-sentence) is noticed and recovered (a nudge; for the cut reply, a new upstream
  connection resumed with the newest handle), the answer reaches the caller, and
  `/stats` counts the stall, the steps and the recovery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from google.adk.agents import Agent
from google.adk.models.google_llm import Gemini
from google.adk.sessions import InMemorySessionService

from gateway.adk.live_config import LiveSettings
from gateway.agent_bridge import AdkAgentConnector
from gateway.metrics.counters import COUNTERS
from tests.gemini.conftest import GENERATIONS
from tests.support.live_api_double import Generation, LiveApiDouble, tool_calling
from tests.support.peers import HeadlessCaller, live_call, tone_pcm

pytestmark = pytest.mark.parametrize("generation", GENERATIONS)

#: Short enough for tests; the defaults (8 s, 4 s) are for real calls.
STALL_TIMEOUT_S = 1.0
STEP_TIMEOUT_S = 1.0
LOUD_RMS = 1000.0


def get_weather(city: str) -> dict[str, str]:
    """The weather in a city."""
    return {"city": city, "weather": "sunny"}


def weather_said(response: dict[str, Any]) -> str:
    result = response.get("response", response)
    return f"It is {result.get('weather')} in {result.get('city')}"


@pytest.fixture
async def gateway(
    gemini_env: LiveApiDouble, live_model_id: str, start_gateway: Callable[..., Any]
) -> AsyncIterator[Callable[..., Any]]:
    """Start the gateway around an agent on the double's model (optionally with tools)."""
    connectors: list[AdkAgentConnector] = []
    COUNTERS.reset()

    async def start(tools: list[Any] | None = None) -> TestClient[Any, Any]:
        agent = Agent(
            name="gemini_agent",
            model=Gemini(model=live_model_id),
            instruction="Be brief.",
            tools=tools or [],
        )
        live = LiveSettings(
            model=live_model_id,
            connect_timeout_s=1.5,
            reconnect_backoff_s=0.05,
            stall_timeout_s=STALL_TIMEOUT_S,
            stall_nudge_timeout_s=STEP_TIMEOUT_S,
        )
        connector = AdkAgentConnector(agent, InMemorySessionService(), app_name="t", live=live)
        connectors.append(connector)
        client: TestClient[Any, Any] = await start_gateway(connector)
        return client

    yield start
    for connector in connectors:
        await connector.close()


async def hear_agent(caller: HeadlessCaller, text: str, limit_s: float = 10.0) -> float:
    """Wait for the agent's final transcript containing `text`; when it arrived."""
    async with asyncio.timeout(limit_s):
        while True:
            for at, message in zip(caller.message_times, caller.messages, strict=True):
                if (
                    message.get("type") == "transcript"
                    and message.get("role") == "agent"
                    and message.get("final")
                    and text in message.get("text", "")
                ):
                    return at
            await caller.wait_message_after(time.monotonic(), 0.2, type="transcript")


async def loud_frames_after(caller: HeadlessCaller, since: float, count: int) -> None:
    async with asyncio.timeout(10):
        while sum(f.rms > LOUD_RMS for f in caller.frames if f.at >= since) < count:
            await asyncio.sleep(0.05)


async def stats(client: TestClient[Any, Any]) -> dict[str, Any]:
    body: dict[str, Any] = await (await client.get("/stats")).json()
    return body


async def test_voice_call(gemini_env: LiveApiDouble, gateway: Callable[..., Any]) -> None:
    client = await gateway()
    async with live_call(client) as (caller, _):
        spoke = time.monotonic()
        caller.mic.play_pcm(tone_pcm(0.6))
        await hear_agent(caller, "reply 1")
        await loud_frames_after(caller, spoke, 20)  # 0.6 s of answer: 30 frames
        user = await caller.wait_message(type="transcript", role="user", final=True)
        assert user["text"].startswith("<speech")
    conn = gemini_env.connections[1]
    assert conn.audio_in_s > 0.5
    heard = [m for m in caller.messages if m.get("type") == "transcript" and m["role"] == "user"]
    assert len([m for m in heard if m["final"]]) == 1  # one final transcription per turn
    assert not gemini_env.refused_settings


async def test_text_mode_call_is_served_from_the_transcription(
    gemini_env: LiveApiDouble, gateway: Callable[..., Any]
) -> None:
    client = await gateway()
    async with live_call(client, query="?mode=text") as (caller, _):
        await caller.wait_channel_open()
        await caller.wait_message(type="session", mode="text")
        asked = time.monotonic()
        caller.send({"type": "text", "text": "what is the weather"})
        answer = await caller.wait_message(type="text", final=True)
        await caller.wait_message(type="turn_complete")
        await asyncio.sleep(0.5)  # any audio would have arrived by now
    assert answer["text"] == "reply 1"
    partial = [m for m in caller.messages if m.get("type") == "text" and not m["final"]]
    assert partial  # streamed: chunks first, then the whole text
    assert "".join(m["text"] for m in partial) == "reply 1"
    assert not [f for f in caller.frames if f.at >= asked and f.rms > LOUD_RMS]
    setup = gemini_env.connections[1].setup
    assert setup["generationConfig"]["responseModalities"] == ["AUDIO"]
    assert not gemini_env.refused_settings


async def test_function_tool_result_is_spoken_and_transcribed(
    gemini_env: LiveApiDouble, gateway: Callable[..., Any], generation: Generation
) -> None:
    gemini_env.default_behaviour = tool_calling("get_weather", {"city": "Paris"}, weather_said)
    client = await gateway(tools=[get_weather])
    async with live_call(client) as (caller, _):
        spoke = time.monotonic()
        caller.mic.play_pcm(tone_pcm(0.6))
        await hear_agent(caller, "It is sunny in Paris")
        await loud_frames_after(caller, spoke, 20)
    conn = gemini_env.connections[1]
    (result,) = conn.tool_results
    if generation == "3.8":
        assert conn.declared_behavior("get_weather") == "NON_BLOCKING"
        assert result.scheduling == "WHEN_IDLE"
        assert any(m.get("text") == "let me check" for m in caller.messages)
    else:
        assert conn.declared_behavior("get_weather") == "BLOCKING"
        assert result.scheduling is None
    assert not gemini_env.refused_settings


@pytest.mark.parametrize(
    ("stall", "counted", "rotations"),
    [
        ("silent", "no_reply", 0),
        ("empty_turn", "empty_turn", 0),
        ("after_tool", "after_tool", 0),
        ("mid_reply", "mid_reply", 1),
    ],
)
async def test_each_stall_is_recovered_and_counted(
    gemini_env: LiveApiDouble,
    gateway: Callable[..., Any],
    stall: str,
    counted: str,
    rotations: int,
) -> None:
    tools = None
    expected = "reply 1"
    if stall == "after_tool":
        gemini_env.default_behaviour = tool_calling("get_weather", {"city": "Oslo"}, weather_said)
        tools, expected = [get_weather], "It is sunny in Oslo"
    gemini_env.stall_plan = [stall]  # type: ignore[list-item]
    client = await gateway(tools=tools)
    async with live_call(client) as (caller, _):
        spoke = time.monotonic()
        caller.mic.play_pcm(tone_pcm(0.6))
        heard_at = await hear_agent(caller, expected, limit_s=15)
        await loud_frames_after(caller, spoke, 10)
        body = await stats(client)
    assert heard_at - spoke < 2 + STALL_TIMEOUT_S + 3 * STEP_TIMEOUT_S
    agent = body["agent"]
    assert agent["stalls"][counted] == 1
    assert sum(agent["stalls"].values()) == 1
    assert agent["nudges"] >= 1
    assert agent["rotations"] == rotations
    assert agent["recovered"] == 1
    assert agent["unrecovered"] == 0
    assert body["workers"][0]["agent"] == agent
    assert gemini_env.connections[1].stalls_served == [stall]
    if rotations:
        resumed = gemini_env.connections[2]
        assert resumed.resumed_handle == gemini_env.connections[1].handles_issued[-1]
        assert resumed.nudges
