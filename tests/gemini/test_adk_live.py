"""What ADK 2.13's own `run_live` does when the upstream connection ends (no gateway).

Canaries for the facts in docs/gemini-live.md, with the real Runner, the real
google-genai client and the Live API double: a goAway reconnects with the newest
handle and no caller audio is lost; a drop right after a handle-less resumption
update (mid-reply) ends `run_live` with APIError 1006 instead of reconnecting
(the trap the gateway's bridge works around); a bad key fails fast with 1007.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from google.adk.agents import Agent
from google.adk.agents.live_request_queue import LiveRequestQueue
from google.adk.agents.run_config import RunConfig
from google.adk.events import Event
from google.adk.models.google_llm import Gemini
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.genai import errors, types

from tests.gemini.conftest import LIVE_MODEL
from tests.support.live_api_double import LiveApiDouble, LiveConnection
from tests.support.live_api_double.audio import stamped_chunk, stamped_seqs


@contextlib.asynccontextmanager
async def live_run(
    queue: LiveRequestQueue, events: list[Event]
) -> AsyncIterator[asyncio.Task[None]]:
    """Run an ADK live session on the double; stream caller audio (0.5 s on, 0.6 s off)."""
    service = InMemorySessionService()
    agent = Agent(name="probe", model=Gemini(model=LIVE_MODEL), instruction="be brief")
    runner = Runner(app_name="probe", agent=agent, session_service=service)
    session = await service.create_session(app_name="probe", user_id="u")
    config = RunConfig(
        response_modalities=[types.Modality.AUDIO],
        session_resumption=types.SessionResumptionConfig(),
    )

    async def consume() -> None:
        async for event in runner.run_live(
            user_id="u", session_id=session.id, live_request_queue=queue, run_config=config
        ):
            events.append(event)

    async def feed() -> None:
        for seq in range(10_000):
            queue.send_realtime(
                types.Blob(data=stamped_chunk(seq, seq % 55 < 25), mime_type="audio/pcm;rate=16000")
            )
            await asyncio.sleep(0.02)

    feeder = asyncio.create_task(feed(), name="probe/feed")
    run = asyncio.create_task(consume(), name="probe/run_live")
    try:
        yield run
    finally:
        feeder.cancel()
        queue.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(run, 5)
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        await runner.close()


async def test_goaway_reconnects_with_the_newest_handle_losing_no_audio(
    gemini_env: LiveApiDouble,
) -> None:
    async def first(conn: LiveConnection) -> None:
        await conn.issue_handle()
        await conn.wait_user_turn()
        await conn.reply("first", audio_s=0.4)  # issues the newest handle at the end
        await conn.go_away()
        await conn.closed.wait()

    gemini_env.behaviours[0] = first
    events: list[Event] = []
    async with live_run(LiveRequestQueue(), events):
        second = await gemini_env.wait_connections(2)
        await second.wait_audio_s(1.0)
    first_conn = gemini_env.connections[0]
    assert second.resumed_handle == first_conn.handles_issued[-1]
    seqs = stamped_seqs(first_conn.audio_in) + stamped_seqs(second.audio_in)
    assert seqs == list(range(len(seqs)))  # in order, none lost, none repeated


async def test_drop_mid_reply_ends_run_live_because_the_handle_was_cleared(
    gemini_env: LiveApiDouble,
) -> None:
    async def first(conn: LiveConnection) -> None:
        await conn.issue_handle()
        await conn.wait_user_turn()
        await conn.reply("cut short", audio_s=1.0, abort_after_s=0.3)

    gemini_env.behaviours[0] = first
    events: list[Event] = []
    async with live_run(LiveRequestQueue(), events) as run:
        with pytest.raises(errors.APIError) as caught:
            await asyncio.wait_for(asyncio.shield(run), 10)
    assert caught.value.code == 1006
    assert len(gemini_env.connections) == 1  # no reconnect attempted
    updates = [e.live_session_resumption_update for e in events if e.live_session_resumption_update]
    assert updates[-1].new_handle is None  # the update that cleared ADK's handle


async def test_bad_key_fails_fast_with_1007(
    gemini_env: LiveApiDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "wrong")
    events: list[Event] = []
    async with live_run(LiveRequestQueue(), events) as run:
        with pytest.raises(errors.APIError) as caught:
            await asyncio.wait_for(asyncio.shield(run), 5)
    assert caught.value.code == 1007
    assert gemini_env.refused == [(1007, "API key not valid. Please pass a valid API key.")]
