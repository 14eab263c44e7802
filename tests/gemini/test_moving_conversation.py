"""A conversation moves to another instance while its first call is still up.

Two `python -m gateway` processes (instances A and B) share one PostgreSQL database
and the Live API double. A caller talks on A; a second call with the same
`session_id` arrives at B while A's call is still up (what a caller moving off a
draining instance does); then both calls take turns.

Pins down:
- B's Live connection resumes with the newest handle A's call received (read from
  the shared store, once stored: it follows the end of the turn), so the model has
  A's turns;
- neither call sees an `error` and every turn is answered, although each call's copy
  of the conversation goes stale whenever the other one writes (ADK's
  `StaleSessionError` ended the call that wrote second);
- every typed turn of both calls is stored in the one conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.adk.resumption import latest_handle
from gateway.adk.sessions import build_session_service, close_session_service
from tests.gemini.conftest import GOOD_KEY, LIVE_MODEL
from tests.support.gateway_process import serving
from tests.support.live_api_double import LiveApiDouble
from tests.support.peers import HeadlessCaller
from tests.support.postgres import fresh_database, pg_url

pytestmark = pytest.mark.slow
APP = "adk-webrtc-gateway"


@pytest.fixture
async def shared_store() -> AsyncIterator[str]:
    async with fresh_database("gw_move") as name:
        yield pg_url(name)


@contextlib.asynccontextmanager
async def in_call(
    http: aiohttp.ClientSession, session_id: str | None
) -> AsyncIterator[tuple[HeadlessCaller, str]]:
    """A caller in a call (with `session_id`, if given); its conversation's id."""
    caller = HeadlessCaller()
    query = f"?session_id={session_id}" if session_id else ""
    try:
        async with http.post(
            f"/calls{query}", data=await caller.offer(), headers={"Content-Type": "application/sdp"}
        ) as response:
            assert response.status == 201, await response.text()
            answer, location = await response.text(), response.headers["Location"]
            conversation = response.headers["X-Session-Id"]
        await caller.accept(answer)
        await caller.wait_connected()
        await caller.wait_channel_open()
        yield caller, conversation
        async with http.delete(location) as response:
            assert response.status == 204
    finally:
        await caller.close()


def turns_completed(caller: HeadlessCaller) -> int:
    return sum(m.get("type") == "turn_complete" for m in caller.messages)


async def say(caller: HeadlessCaller, text: str) -> None:
    """Type `text`; return once the answer's turn is complete."""
    done = turns_completed(caller)
    caller.send({"type": "text", "text": text})
    async with asyncio.timeout(15):
        while turns_completed(caller) <= done:
            await asyncio.sleep(0.05)


async def until_stored(store_url: str, conversation: str, handle: str) -> None:
    """Return once `conversation`'s newest stored resumption handle is `handle`."""
    service = build_session_service(store_url)
    try:
        async with asyncio.timeout(10):
            while True:
                listed = await service.list_sessions(app_name=APP)
                [stored] = [s for s in listed.sessions if s.id == conversation]
                found = await service.get_session(
                    app_name=APP, user_id=stored.user_id, session_id=conversation
                )
                assert found is not None
                if latest_handle(found, max_age_s=3600) == handle:
                    return
                await asyncio.sleep(0.05)
    finally:
        await close_session_service(service)


async def test_a_conversation_moves_to_another_instance_while_its_call_is_up(
    gemini_env: LiveApiDouble, shared_store: str, tmp_path: Path
) -> None:
    double = gemini_env
    env = {
        **os.environ,
        "GATEWAY_SESSION_URL": shared_store,
        "GATEWAY_GEMINI_MODEL": LIVE_MODEL,
        "GOOGLE_API_KEY": GOOD_KEY,
        "GOOGLE_GEMINI_BASE_URL": double.base_url,
        "SSL_CERT_FILE": str(double.cert.cert_path),
    }
    args = ("--workers", "1")
    log = tmp_path / "gateways.log"
    async with (
        serving(*args, env=env, log=log) as a,
        serving(*args, env=env, log=log) as b,
        aiohttp.ClientSession(a.base) as to_a,
        aiohttp.ClientSession(b.base) as to_b,
        in_call(to_a, None) as (first, conversation),
    ):
        await say(first, "my name is Ada")
        # The update with the newest handle follows the turn's end; a move before it
        # is stored resumes the previous handle (one turn less), so wait for it.
        newest = double.connections[-1].handles_issued[-1]
        await until_stored(shared_store, conversation, newest)
        async with in_call(to_b, conversation) as (second, moved_to):
            assert moved_to == conversation
            await say(second, "what is my name")
            await say(first, "the old call still talks")
            await say(second, "and the new one answers")
        errors = [m for m in (*first.messages, *second.messages) if m["type"] == "error"]
        assert errors == []
    [on_a] = [c for c in double.connections if c.history[:1] == [("user", "my name is Ada")]
              and c.resumed_handle is None]  # fmt: skip
    [on_b] = [c for c in double.connections if ("user", "what is my name") in c.history]
    assert on_b is not on_a
    assert on_b.resumed_handle is not None
    assert on_b.resumed_handle == newest
    assert ("user", "my name is Ada") in on_b.history

    service = build_session_service(shared_store)
    try:
        listed = await service.list_sessions(app_name=APP)
        [stored] = [s for s in listed.sessions if s.id == conversation]
        found = await service.get_session(
            app_name=APP, user_id=stored.user_id, session_id=stored.id
        )
        assert found is not None
        typed = [
            p.text
            for e in found.events
            if e.author == "user" and e.content
            for p in e.content.parts or []
            if p.text
        ]
    finally:
        await close_session_service(service)
    assert typed == [
        "my name is Ada",
        "what is my name",
        "the old call still talks",
        "and the new one answers",
    ]
