"""Calls through the whole gateway to the Gemini Live API double.

Real parts only: HTTP signaling, a headless aiortc caller over loopback, ADK's
Runner with its `Gemini` model and the real google-genai client, speaking TLS
websockets to the double. (Connection 0 at the double is the pre-answer check.)

Pins down:
- a call survives a goAway: the new connection resumed with the newest handle, the
  double heard the caller on both sides of the switch, and the answer after the
  switch reaches the caller as audio;
- a call survives an abrupt upstream drop mid-reply, right after a handle-less
  resumption update (which makes ADK give up): the bridge resumes with the newest
  handle and the conversation goes on;
- a bad key, an unknown model and an unreachable endpoint are refused before the
  answer with 503 `agent_unavailable` naming the cause, within a few seconds;
- the upstream refusing a reconnect mid-call ends the call with a fatal `error`
  event naming the cause.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.adk.agents import Agent
from google.adk.models.google_llm import Gemini
from google.adk.sessions import InMemorySessionService

from gateway.adk.live_config import LiveSettings
from gateway.agent_bridge import AdkAgentConnector
from tests.gemini.conftest import GENERATIONS
from tests.support.live_api_double import LiveApiDouble, LiveConnection
from tests.support.peers import HeadlessCaller, live_call, tone_pcm

#: Every test here runs against both current model generations of the double.
pytestmark = pytest.mark.parametrize("generation", GENERATIONS)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections (backlog) but never speaks."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


async def wait_count(
    caller: HeadlessCaller, count: int, timeout: float = 10.0, **match: Any
) -> None:
    async with asyncio.timeout(timeout):
        while sum(all(m.get(k) == v for k, v in match.items()) for m in caller.messages) < count:
            await asyncio.sleep(0.02)


def loud_frames_since(caller: HeadlessCaller, start: float) -> int:
    return sum(f.rms > 1000 for f in caller.frames if f.at >= start)


async def speak_and_hear_reply(caller: HeadlessCaller, turns_done: int) -> int:
    """Say something; wait for the answer's turn_complete; loud frames heard meanwhile."""
    started = time.monotonic()
    caller.mic.play_pcm(tone_pcm(0.6))
    await wait_count(caller, turns_done + 1, type="turn_complete")
    await asyncio.sleep(0.3)  # the paced track plays out the answer's tail
    return loud_frames_since(caller, started)


async def test_call_survives_goaway(
    gemini_env: LiveApiDouble,
    gemini_connector: AdkAgentConnector,
    start_gateway: Callable[..., Any],
) -> None:
    async def first(conn: LiveConnection) -> None:
        await conn.issue_handle()
        await conn.wait_user_turn()
        await conn.reply("first answer", audio_s=0.6)
        await conn.go_away("10s")
        await conn.closed.wait()

    gemini_env.behaviours[1] = first
    client = await start_gateway(gemini_connector)
    async with live_call(client) as (caller, _):
        assert await speak_and_hear_reply(caller, 0) >= 20  # 0.6 s answer = 30 frames
        second = await gemini_env.wait_connections(3)
        assert await speak_and_hear_reply(caller, 1) >= 20  # answered after the switch
    first_conn = gemini_env.connections[1]
    assert second.resumed_handle == first_conn.handles_issued[-1]
    assert first_conn.audio_in_s > 0.5
    assert second.audio_in_s > 0.5
    assert [u for u in second.history if u[0] == "model"][:1] == [("model", "first answer")]


async def test_call_survives_an_abrupt_drop_mid_reply(
    gemini_env: LiveApiDouble,
    gemini_connector: AdkAgentConnector,
    start_gateway: Callable[..., Any],
) -> None:
    async def first(conn: LiveConnection) -> None:
        await conn.issue_handle()
        await conn.wait_user_turn()
        await conn.reply("first answer", audio_s=0.6)  # ends with a fresh handle
        await conn.wait_user_turn()
        await conn.reply("never finished", audio_s=3.0, abort_after_s=0.5)

    gemini_env.behaviours[1] = first
    client = await start_gateway(gemini_connector)
    async with live_call(client) as (caller, _):
        assert await speak_and_hear_reply(caller, 0) >= 20
        cut_started = time.monotonic()
        caller.mic.play_pcm(tone_pcm(0.6))
        second = await gemini_env.wait_connections(3)
        assert loud_frames_since(caller, cut_started) >= 5  # part of the cut answer
        assert await speak_and_hear_reply(caller, 1) >= 20  # the conversation goes on
    first_conn = gemini_env.connections[1]
    assert second.resumed_handle == first_conn.handles_issued[-1]
    assert "modelTurn" in first_conn.sent[-1]["serverContent"]  # dropped mid-reply...
    updates = [
        m["sessionResumptionUpdate"] for m in first_conn.sent if "sessionResumptionUpdate" in m
    ]
    assert updates[-1] == {"resumable": False}  # ...after the update that clears ADK's handle
    assert ("model", "first answer") in second.history
    assert second.audio_in_s > 0.5
    assert not [m for m in caller.messages if m.get("type") == "error"]


@pytest.mark.parametrize(
    ("breakage", "cause"),
    [
        ("bad_key", "invalid API key"),
        (
            "unknown_model",
            "does not serve model gemini-no-such-model (close code 1008); "
            "live models this gateway knows: gemini-3.8-live",
        ),
        ("refused", "could not be reached"),
        ("silent", "could not be reached"),
    ],
)
async def test_upstream_refusal_is_a_503_before_the_answer(
    gemini_env: LiveApiDouble,
    start_gateway: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    silent_port: int,
    live_model_id: str,
    breakage: str,
    cause: str,
) -> None:
    model = "gemini-no-such-model" if breakage == "unknown_model" else live_model_id
    if breakage == "bad_key":
        monkeypatch.setenv("GOOGLE_API_KEY", "wrong")
    if breakage in ("refused", "silent"):
        port = silent_port if breakage == "silent" else _closed_port()
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f"https://127.0.0.1:{port}")
    agent = Agent(name="gemini_agent", model=Gemini(model=model), instruction="Be brief.")
    live = LiveSettings(model=model, connect_timeout_s=1.5)
    connector = AdkAgentConnector(agent, InMemorySessionService(), app_name="t", live=live)
    client = await start_gateway(connector)
    caller = HeadlessCaller()
    started = time.monotonic()
    try:
        response = await client.post(
            "/calls", data=await caller.offer(), headers={"Content-Type": "application/sdp"}
        )
        elapsed = time.monotonic() - started
        body = await response.json()
    finally:
        await caller.close()
        await connector.close()
    assert response.status == 503
    assert response.headers["Retry-After"]
    assert body["error"]["code"] == "agent_unavailable"
    assert cause in body["error"]["message"]
    assert elapsed < 4.0
    assert not gemini_env.connections  # no session was ever set up


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_refused_reconnect_ends_the_call_with_an_error_event(
    gemini_env: LiveApiDouble,
    gemini_connector: AdkAgentConnector,
    start_gateway: Callable[..., Any],
) -> None:
    async def first(conn: LiveConnection) -> None:
        await conn.issue_handle()
        await conn.wait_user_turn()
        conn.double.accepted_api_keys = frozenset()  # the key was revoked meanwhile
        await conn.abort()

    gemini_env.behaviours[1] = first
    client = await start_gateway(gemini_connector)
    async with live_call(client) as (caller, _):
        await caller.wait_channel_open()
        caller.mic.play_pcm(tone_pcm(0.6))
        error = await caller.wait_message(type="error", limit_s=10)
    assert error["code"] == "agent_unavailable"
    assert error["fatal"] is True
    assert "invalid API key" in error["message"]
    assert gemini_env.refused[-1][0] == 1007
