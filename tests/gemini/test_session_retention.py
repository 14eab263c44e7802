"""Old conversations expire; recent ones stay.

Real stores: a SQLite file and a fresh database on the local PostgreSQL.

Pins down: `expire_sessions` deletes this app's conversations last touched before
the cut-off, with their events, at most `batch` per pass (oldest first), and keeps
recent ones and other apps' conversations; `/stats`' counter counts what it
deleted; the upkeep task (`store_upkeep`) expires by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from google.adk.events import Event
from google.adk.sessions import BaseSessionService
from google.genai import types

from gateway.adk import store_guard
from gateway.adk.retention import expire_sessions, store_upkeep
from gateway.adk.sessions import build_session_service, check_session_service, close_session_service
from gateway.metrics.counters import COUNTERS
from tests.support.postgres import fresh_database, pg_url

APP = "retention-test"


@pytest.fixture(autouse=True)
def fresh_store_state() -> Iterator[None]:
    store_guard.HEALTH.reset()
    COUNTERS.reset()
    yield
    store_guard.HEALTH.reset()


async def stored_texts(service: BaseSessionService, user_id: str, session_id: str) -> list[str]:
    found = await service.get_session(app_name=APP, user_id=user_id, session_id=session_id)
    assert found is not None
    return [p.text for e in found.events if e.content for p in e.content.parts or [] if p.text]


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[BaseSessionService]:
    async with fresh_database("gw_retention") as name:
        sqlite = f"sqlite+aiosqlite:///{tmp_path}/s.db"
        service = build_session_service(sqlite if request.param == "sqlite" else pg_url(name))
        await check_session_service(service, app_name=APP)
        yield service
        await close_session_service(service)


async def _conversation(service: BaseSessionService, user_id: str, age_days: float) -> str:
    """A conversation with one stored turn, last touched `age_days` ago."""
    session = await service.create_session(app_name=APP, user_id=user_id)
    said = types.Content(role="user", parts=[types.Part(text="hello")])
    event = Event(author="user", invocation_id="i", content=said)
    event.timestamp -= age_days * 86400  # ADK sets update_time from the event's time
    await service.append_event(session, event)
    return session.id


async def _ids(service: BaseSessionService) -> set[str]:
    return {s.id for s in (await service.list_sessions(app_name=APP)).sessions}


async def test_retention_expires_old_conversations_in_batches(store: BaseSessionService) -> None:
    old = {await _conversation(store, f"old{i}", age_days=40) for i in range(3)}
    recent = {await _conversation(store, "recent", age_days=29)}
    other_app = await store.create_session(app_name="another-app", user_id="old0")
    month_s = 30 * 86400
    assert await expire_sessions(store, app_name=APP, older_than_s=month_s, batch=2) == 2
    assert await expire_sessions(store, app_name=APP, older_than_s=month_s, batch=2) == 1
    assert await expire_sessions(store, app_name=APP, older_than_s=month_s, batch=2) == 0
    assert await _ids(store) == recent
    for session_id, user_id in [(s, f"old{i}") for i, s in enumerate(sorted(old))]:
        gone = await store.get_session(app_name=APP, user_id=user_id, session_id=session_id)
        assert gone is None
    [kept] = recent
    assert await stored_texts(store, "recent", kept) == ["hello"]
    assert await store.get_session(app_name="another-app", user_id="old0", session_id=other_app.id)
    assert COUNTERS.values()[COUNTERS.names.index("sessions_expired")] == 3


async def test_upkeep_task_expires_by_itself(store: BaseSessionService) -> None:
    old = await _conversation(store, "old", age_days=2)
    recent = await _conversation(store, "recent", age_days=0)
    upkeep = store_upkeep(
        store, app_name=APP, retention_s=86400, pass_interval_s=60, probe_interval_s=0.05
    )
    task = asyncio.create_task(upkeep, name="test-upkeep")
    try:
        async with asyncio.timeout(10):
            while old in await _ids(store):
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await _ids(store) == {recent}
