"""An honest session store: failures seen by caller and operator, writability checked,
concurrent writers and replicas served, old conversations expired.

Real parts: the local PostgreSQL (a database per test, made read-only or cut off by
the test), SQLite files (a read-only bind mount, since root ignores file modes), ADK's
runner with the scripted live model, headless aiortc callers, `python -m gateway`.

Pins down:
- the store failing mid-call (PostgreSQL read-only with every connection terminated,
  or the SQLite file's folder remounted read-only):
  the caller gets one non-fatal `error` `session_store_unavailable`, its turns are
  still answered, `/stats` counts the failures, `store_ready()` is false; when the
  store serves again a probe makes it ready, and the next turn stores the turns it
  missed first, in order;
- the store gone when a call's agent session must start again (an upstream drop ADK
  does not resume from): a fatal `session_store_unavailable`, the call ends;
- a read-only SQLite directory, a read-only PostgreSQL database and a role without
  rights stop start-up with a one-line reason (the first through `python -m gateway`);
- 200 conversations created and written at once in one SQLite file all succeed;
- three gateway processes starting together on a fresh PostgreSQL database all come
  up (ADK's table creation is held open so that they all reach it at once).
Retention: test_session_retention.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from google.adk.agents import Agent
from google.adk.events import Event
from google.adk.models.google_llm import Gemini
from google.adk.sessions import BaseSessionService
from google.genai import types

import gateway.models.scripted  # noqa: F401  (registers scripted-live)
from gateway.adk import store_guard
from gateway.adk.live_config import LiveSettings
from gateway.adk.sessions import (
    SessionStoreError,
    build_session_service,
    check_session_service,
    close_session_service,
    probe_store,
    store_ready,
)
from gateway.agent_bridge import AdkAgentConnector
from gateway.metrics.counters import COUNTERS
from tests.gemini.conftest import LIVE_MODEL
from tests.support import REPO_ROOT
from tests.support.gateway_process import serving
from tests.support.live_api_double import LiveApiDouble, LiveConnection
from tests.support.peers import live_call
from tests.support.postgres import PG, admin, fresh_database, pg_url

APP = "store-test"


@pytest.fixture
async def pg_db() -> AsyncIterator[str]:
    async with fresh_database() as name:
        yield name


async def set_read_only(name: str, read_only: bool) -> None:
    """Make the database read-only (or writable) for new transactions, and cut every
    connection to it so the gateway's pooled ones reconnect under the new rule."""
    async with admin() as conn:
        setting = "SET default_transaction_read_only = on" if read_only else "RESET ALL"
        await conn.execute(f'ALTER DATABASE "{name}" {setting}')
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )


@pytest.fixture(autouse=True)
def fresh_store_state() -> Iterator[None]:
    store_guard.HEALTH.reset()
    COUNTERS.reset()
    yield
    store_guard.HEALTH.reset()


@contextlib.contextmanager
def read_only_mount(folder: Path) -> Iterator[None]:
    """`folder` on a read-only bind mount of itself (root writes through file modes)."""
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


async def stored_texts(service: BaseSessionService, user_id: str, session_id: str) -> list[str]:
    found = await service.get_session(app_name=APP, user_id=user_id, session_id=session_id)
    assert found is not None
    return [p.text for e in found.events if e.content for p in e.content.parts or [] if p.text]


def connector_for(service: BaseSessionService) -> AdkAgentConnector:
    agent = Agent(name="store_agent", model="scripted-live", instruction="Be brief.")
    return AdkAgentConnector(agent, service, app_name=APP)


@dataclass
class Outage:
    """A store that a test can make fail (`cut`) and serve again (`restore`)."""

    connector: AdkAgentConnector
    cut: Callable[[], Awaitable[None]]
    restore: Callable[[], Awaitable[None]]


@pytest.fixture(params=["postgresql", "sqlite"])
async def outage(
    request: pytest.FixtureRequest, pg_db: str, tmp_path: Path
) -> AsyncIterator[Outage]:
    """PostgreSQL made read-only (every connection cut), or the SQLite file's folder
    remounted read-only."""
    folder = tmp_path / "store"
    sqlite = request.param == "sqlite"
    service = build_session_service(
        f"sqlite+aiosqlite:///{folder}/sessions.db" if sqlite else pg_url(pg_db)
    )
    await check_session_service(service, app_name=APP)
    mounts = contextlib.ExitStack()

    async def cut() -> None:
        if sqlite:
            mounts.enter_context(read_only_mount(folder))
        else:
            await set_read_only(pg_db, True)

    async def restore() -> None:
        if sqlite:
            mounts.close()
        else:
            await set_read_only(pg_db, False)

    connector = connector_for(service)
    with mounts:
        yield Outage(connector, cut, restore)
    await connector.close()
    await close_session_service(service)


async def say(caller: Any, text: str) -> None:
    caller.send({"type": "text", "text": text})
    await caller.wait_message(type="transcript", role="agent", text=f"You said: {text}")


async def test_store_failing_mid_call_is_told_counted_and_recovers(
    outage: Outage, start_gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    service = outage.connector.session_service
    client = await start_gateway(outage.connector)
    async with live_call(client) as (caller, _):
        await caller.wait_channel_open()
        await say(caller, "one")
        assert store_ready()

        await outage.cut()
        await say(caller, "two")  # still answered: the live model has the context
        await say(caller, "three")
        errors = [m for m in caller.messages if m["type"] == "error"]
        assert len(errors) == 1, errors  # once per outage, not per event
        assert errors[0]["code"] == "session_store_unavailable"
        assert errors[0]["fatal"] is False
        assert not store_ready()
        async with client.get("/stats") as response:
            stats = await response.json()
        assert stats["session_store"]["failures"] >= 2
        assert stats["session_store"]["retries"] >= 2

        await outage.restore()
        assert await probe_store(service, app_name=APP)
        assert store_ready()
        await say(caller, "four")
        [conversation] = (await service.list_sessions(app_name=APP)).sessions
        texts = await stored_texts(service, conversation.user_id, conversation.id)
        found = await service.get_session(
            app_name=APP, user_id=conversation.user_id, session_id=conversation.id
        )
    # The turns the store missed were stored before the next one, in order, once.
    assert texts == ["one", "two", "three", "four"]
    assert found is not None
    answers = [e.output_transcription.text for e in found.events if e.output_transcription]
    assert answers == [f"You said: {turn}" for turn in ("one", "two", "three", "four")]
    outage_lines = [r.getMessage() for r in caplog.records if r.name == store_guard.__name__]
    assert len(outage_lines) == 2, outage_lines  # one when it starts, one when it ends
    assert outage_lines[0].startswith("session store failing (append): ")
    assert outage_lines[1].startswith("session store serving again after ")


async def test_store_gone_when_the_agent_session_restarts_ends_the_call(
    gemini_env: LiveApiDouble, pg_db: str, start_gateway: Any
) -> None:
    service = build_session_service(pg_url(pg_db))
    await check_session_service(service, app_name=APP)
    agent = Agent(name="store_agent", model=Gemini(model=LIVE_MODEL), instruction="Be brief.")
    live = LiveSettings(model=LIVE_MODEL, connect_timeout_s=1.5, reconnect_backoff_s=0.05)
    connector = AdkAgentConnector(agent, service, app_name=APP, live=live)

    async def first(conn: LiveConnection) -> None:
        await conn.issue_handle()
        await conn.wait_user_turn()
        await conn.reply("first answer", audio_s=0.2)
        async with admin() as db:  # the database takes no connection any more
            await db.execute(f'ALTER DATABASE "{pg_db}" WITH ALLOW_CONNECTIONS false')
            await db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", pg_db
            )
        await conn.not_resumable()  # ADK gives up on the drop; the bridge runs it again
        await conn.abort()

    gemini_env.behaviours[1] = first
    try:
        client = await start_gateway(connector)
        async with live_call(client) as (caller, _):
            await caller.wait_channel_open()
            caller.send({"type": "text", "text": "hello"})
            fatal = await caller.wait_message(limit_s=15, type="error", fatal=True)
            errors = [m for m in caller.messages if m["type"] == "error"]
    finally:
        await connector.close()
        await close_session_service(service)
        async with admin() as db:
            await db.execute(f'ALTER DATABASE "{pg_db}" WITH ALLOW_CONNECTIONS true')
    assert fatal["code"] == "session_store_unavailable"
    assert "cannot go on" in fatal["message"]
    # Before it, the update the store could not keep: one non-fatal error.
    assert [(e["code"], e["fatal"]) for e in errors] == [
        ("session_store_unavailable", False),
        ("session_store_unavailable", True),
    ]


async def test_read_only_sqlite_directory_stops_start_up(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    url = f"sqlite+aiosqlite:///{folder}/sessions.db"
    service = build_session_service(url)
    await check_session_service(service, app_name=APP)  # the file exists, with tables
    await close_session_service(service)
    env = {**os.environ, "GATEWAY_SESSION_URL": url}
    env.pop("GOOGLE_API_KEY", None)
    with read_only_mount(folder):
        started = subprocess.run(
            [sys.executable, "-m", "gateway", "--agent", "gateway.agents.scripted:root_agent",
             "--port", "0", "--workers", "1"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert started.returncode != 0
    last = started.stderr.strip().splitlines()[-1]
    assert last.startswith("adk-webrtc-gateway: session store unavailable ("), started.stderr
    assert "read-only" in last, last


async def test_read_only_postgresql_database_stops_start_up(pg_db: str) -> None:
    service = build_session_service(pg_url(pg_db))
    await check_session_service(service, app_name=APP)  # tables exist
    await close_session_service(service)
    await set_read_only(pg_db, True)
    service = build_session_service(pg_url(pg_db))
    try:
        with pytest.raises(SessionStoreError) as caught:
            await check_session_service(service, app_name=APP)
    finally:
        await close_session_service(service)
    message = str(caught.value)
    assert "\n" not in message
    assert "ReadOnlySQLTransactionError: cannot execute INSERT in a read-only" in message


async def test_postgresql_role_without_rights_stops_start_up(pg_db: str) -> None:
    service = build_session_service(pg_url(pg_db))
    await check_session_service(service, app_name=APP)
    await close_session_service(service)
    reader = f"{pg_db}_reader"
    async with admin() as conn:
        await conn.execute(f'CREATE ROLE "{reader}" LOGIN')
    service = build_session_service(pg_url(pg_db, user=reader))
    try:
        with pytest.raises(SessionStoreError) as caught:
            await check_session_service(service, app_name=APP)
    finally:
        await close_session_service(service)
    assert "\n" not in str(caught.value)
    assert "permission denied" in str(caught.value)


async def _write_one(service: BaseSessionService, index: int) -> None:
    session = await service.create_session(app_name=APP, user_id=f"u{index % 20}")
    said = types.Content(role="user", parts=[types.Part(text=f"turn {index}")])
    await service.append_event(session, Event(author="user", invocation_id="i", content=said))


@pytest.mark.slow
async def test_sqlite_serves_a_burst_of_200_conversations(tmp_path: Path) -> None:
    service = build_session_service(f"sqlite+aiosqlite:///{tmp_path}/sessions.db")
    try:
        await check_session_service(service, app_name=APP)
        results = await asyncio.gather(
            *(_write_one(service, i) for i in range(200)), return_exceptions=True
        )
        failures = [repr(r) for r in results if r is not None]
        assert failures == []  # before WAL + BEGIN IMMEDIATE: 76 "database is locked"
        listed = await service.list_sessions(app_name=APP)
        assert len(listed.sessions) == 200
        assert COUNTERS.values()[COUNTERS.names.index("session_store_failures")] == 0
    finally:
        await close_session_service(service)


async def _waiting_on_locks(database: str) -> int:
    async with admin() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
            database,
        )
        return count


@pytest.mark.slow
async def test_replicas_starting_together_on_a_fresh_postgresql_all_come_up(
    pg_db: str, tmp_path: Path
) -> None:
    # A transaction of ours creates ADK's first table and stays open, so every replica
    # reaches its own CREATE TABLE (or the schema lock) before any can finish: the
    # race of replicas started at the same moment, made certain.
    blocker = await asyncpg.connect(**PG, database=pg_db)
    holding = blocker.transaction()
    await holding.start()
    await blocker.execute(
        "CREATE TABLE adk_internal_metadata (key VARCHAR(128) PRIMARY KEY, value VARCHAR(256))"
    )
    env = {**os.environ, "GATEWAY_SESSION_URL": pg_url(pg_db)}
    env.pop("GOOGLE_API_KEY", None)
    args = ("--agent", "gateway.agents.scripted:root_agent", "--workers", "1")
    logs = [tmp_path / f"replica{i}.log" for i in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        starting = asyncio.gather(
            *(stack.enter_async_context(serving(*args, env=env, log=log)) for log in logs)
        )
        try:
            async with asyncio.timeout(25):
                while await _waiting_on_locks(pg_db) < 3:
                    assert not starting.done(), "a replica came up past a held table"
                    await asyncio.sleep(0.2)
        finally:
            await holding.rollback()
            await blocker.close()
        replicas = await starting
        for replica in replicas:
            assert (await replica.get("/healthz"))["status"] == "ok"
    for log in logs:
        assert "UniqueViolation" not in log.read_text()
