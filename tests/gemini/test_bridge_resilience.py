"""The ADK bridge's own reconnects, with stamped caller audio (no WebRTC in between).

Real ADK Runner, real google-genai client, the Live API double. Every 20 ms caller
chunk carries its sequence number, so what the model received on each side of a
switch can be checked chunk by chunk.

Pins down:
- a drop mid-reply (after the handle-less update that makes ADK give up) is resumed
  by the bridge with the newest handle; caller audio reaches the model in order, with
  no duplicates and at most the one chunk ADK's send task held when it was cancelled;
  nothing is dropped from the bounded queue; the session records one reconnect;
- a stored handle continues a session: the first connection already resumes with it;
- an upstream that keeps failing (1011 at every reconnect) is given up after
  `max_reconnects` of ours (each with ADK's own five tries), with a fatal
  `agent_unavailable` error; nothing hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from google.adk.agents import Agent
from google.adk.events import Event
from google.adk.models.google_llm import Gemini
from google.adk.sessions import InMemorySessionService
from google.genai import types

from gateway.adk.live_config import LiveSettings
from gateway.agent_api import AgentError, AgentEvent, Modality
from gateway.agent_bridge import AdkAgentConnector, AdkAgentSession
from tests.gemini.conftest import LIVE_MODEL
from tests.support.live_api_double import LiveApiDouble, LiveConnection
from tests.support.live_api_double.audio import stamped_chunk, stamped_seqs


@pytest.fixture
async def connector(gemini_env: LiveApiDouble) -> AsyncIterator[AdkAgentConnector]:
    agent = Agent(name="gemini_agent", model=Gemini(model=LIVE_MODEL), instruction="Be brief.")
    live = LiveSettings(model=LIVE_MODEL, reconnect_backoff_s=0.05, max_reconnects=2)
    bridge = AdkAgentConnector(agent, InMemorySessionService(), app_name="t", live=live)
    yield bridge
    await bridge.close()


@contextlib.asynccontextmanager
async def talking(session: AdkAgentSession) -> AsyncIterator[list[AgentEvent]]:
    """Stream stamped caller audio (0.5 s tone, 0.6 s silence) and collect agent events."""
    events: list[AgentEvent] = []

    async def feed() -> None:
        for seq in range(100_000):
            session.send_audio(stamped_chunk(seq, loud=seq % 55 < 25))
            await asyncio.sleep(0.02)

    async def collect() -> None:
        async for event in session.events():
            events.append(event)

    async with asyncio.TaskGroup() as tasks:
        feeder = tasks.create_task(feed(), name="test/feed")
        collector = tasks.create_task(collect(), name="test/collect")
        try:
            yield events
        finally:
            feeder.cancel()
            collector.cancel()


async def test_drop_mid_reply_is_resumed_without_losing_caller_audio(
    gemini_env: LiveApiDouble, connector: AdkAgentConnector
) -> None:
    async def first(conn: LiveConnection) -> None:
        await conn.issue_handle()
        await conn.wait_user_turn()
        await conn.reply("cut short", audio_s=2.0, abort_after_s=0.4)

    gemini_env.behaviours[1] = first  # 0 is the pre-answer check
    async with connector.open_session(user_id="u", session_id=None, modality=Modality.AUDIO) as s:
        async with talking(s) as events:
            second = await gemini_env.wait_connections(3)
            await second.wait_audio_s(1.0)
        assert (s.reconnects, s.dropped_audio_chunks) == (1, 0)
    first_conn = gemini_env.connections[1]
    assert s.started_with == [None, first_conn.handles_issued[-1]]
    assert second.resumed_handle == first_conn.handles_issued[-1]
    before, after = stamped_seqs(first_conn.audio_in), stamped_seqs(second.audio_in)
    assert before == list(range(len(before)))
    assert after == list(range(after[0], after[0] + len(after)))
    assert after[0] - before[-1] <= 2  # at most the one chunk in ADK's hands
    assert not [e for e in events if isinstance(e, AgentError)]


async def test_stored_handle_resumes_the_first_connection(
    gemini_env: LiveApiDouble, connector: AdkAgentConnector
) -> None:
    stored = await connector.session_service.create_session(app_name="t", user_id="u")
    update = types.LiveServerSessionResumptionUpdate(new_handle="h-stored", resumable=True)
    await connector.session_service.append_event(
        stored, Event(author="agent", invocation_id="i", live_session_resumption_update=update)
    )
    gemini_env.sessions["h-stored"] = [("user", "my name is Ada")]
    async with connector.open_session(
        user_id="u", session_id=stored.id, modality=Modality.AUDIO
    ) as session:
        conn = await gemini_env.wait_connections(2)
        assert session.started_with == ["h-stored"]
    assert conn.resumed_handle == "h-stored"
    assert conn.history[0] == ("user", "my name is Ada")


async def test_an_upstream_that_keeps_failing_is_given_up(
    gemini_env: LiveApiDouble, connector: AdkAgentConnector
) -> None:
    async def then_fail(conn: LiveConnection) -> None:
        await conn.issue_handle()
        await conn.wait_user_turn()
        conn.double.refuse_all = (1011, "The service is currently unavailable.")
        await conn.abort()

    gemini_env.behaviours[1] = then_fail
    async with connector.open_session(user_id="u", session_id=None, modality=Modality.AUDIO) as s:
        async with talking(s) as events:
            async with asyncio.timeout(15):
                while not any(isinstance(e, AgentError) for e in events):
                    await asyncio.sleep(0.05)
        assert s.reconnects == 2  # max_reconnects
    errors = [e for e in events if isinstance(e, AgentError)]
    message = "the Gemini Live API connection dropped (close code 1011)"
    assert errors == [AgentError("agent_unavailable", message)]
    # ADK retries a 1011 five times by itself within each of our three run_lives.
    assert len(gemini_env.refused) == 3 * 5
