"""The session service chosen by URL.

Pins down: `memory://`, SQLite (default; its directory is created) and PostgreSQL
(a database this test creates and drops) all keep a conversation's events, and a
second service instance (as in another process) finds the conversation and its
newest resumption handle; empty resumption updates do not hide the handle; invalid
URLs and unreachable stores fail with a clear `SessionStoreError`, quickly.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from google.adk.events import Event
from google.adk.sessions import BaseSessionService, DatabaseSessionService, InMemorySessionService
from google.genai import types

from gateway.adk.resumption import latest_handle
from gateway.adk.sessions import (
    SessionStoreError,
    build_session_service,
    check_session_service,
    parse_session_url,
    redact_url,
)

APP = "gateway-test"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    name = f"gw_sessions_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _update(handle: str | None, resumable: bool) -> Event:
    update = types.LiveServerSessionResumptionUpdate(new_handle=handle, resumable=resumable)
    return Event(author="agent", invocation_id="inv", live_session_resumption_update=update)


async def _write_conversation(service: BaseSessionService) -> str:
    session = await service.create_session(app_name=APP, user_id="u1")
    said = types.Content(role="user", parts=[types.Part(text="my name is Ada")])
    await service.append_event(session, Event(author="user", invocation_id="inv", content=said))
    await service.append_event(session, _update("h-old", True))
    await service.append_event(session, _update("h-new", True))
    await service.append_event(session, _update(None, False))  # mid-generation update
    return session.id


async def _read_back(service: BaseSessionService, session_id: str) -> None:
    found = await service.get_session(app_name=APP, user_id="u1", session_id=session_id)
    assert found is not None
    texts = [p.text for e in found.events if e.content for p in e.content.parts or [] if p.text]
    assert texts == ["my name is Ada"]
    assert latest_handle(found, max_age_s=7200) == "h-new"
    assert latest_handle(found, max_age_s=7200, now=time.time() + 7300) is None


async def test_memory_url_keeps_a_conversation_in_process() -> None:
    service = build_session_service("memory://")
    assert isinstance(service, InMemorySessionService)
    await _read_back(service, await _write_conversation(service))


async def test_sqlite_creates_its_directory_and_survives_a_new_service(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/var/nested/sessions.db"
    first = build_session_service(url)
    assert isinstance(first, DatabaseSessionService)
    try:
        await check_session_service(first, app_name=APP)
        session_id = await _write_conversation(first)
    finally:
        await first.close()
    assert (tmp_path / "var/nested/sessions.db").is_file()
    second = build_session_service(url)
    assert isinstance(second, DatabaseSessionService)
    try:
        await _read_back(second, session_id)
    finally:
        await second.close()


async def test_postgresql_survives_a_new_service(postgres_url: str) -> None:
    first = build_session_service(postgres_url)
    assert isinstance(first, DatabaseSessionService)
    try:
        await check_session_service(first, app_name=APP)
        session_id = await _write_conversation(first)
    finally:
        await first.close()
    second = build_session_service(postgres_url)
    assert isinstance(second, DatabaseSessionService)
    try:
        await _read_back(second, session_id)
    finally:
        await second.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "not a URL"),
        ("mysql+aiomysql://u@h/db", "unsupported database 'mysql'"),
        ("sqlite:///x.db", "sqlite+aiosqlite"),
        ("postgresql://u:secret@h/db", "postgresql+asyncpg"),
        ("sqlite+aiosqlite://", "file path"),
    ],
)
def test_invalid_urls_are_refused_clearly(url: str, expected: str) -> None:
    with pytest.raises(SessionStoreError, match=re.escape(expected)) as caught:
        parse_session_url(url)
    assert "secret" not in str(caught.value)


def test_redaction_hides_passwords() -> None:
    assert "secret" not in redact_url("postgresql+asyncpg://u:secret@h/db")


async def test_unreachable_postgresql_fails_the_check_quickly() -> None:
    service = build_session_service("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    assert isinstance(service, DatabaseSessionService)
    started = time.monotonic()
    try:
        with pytest.raises(SessionStoreError, match="unavailable"):
            await check_session_service(service, app_name=APP, timeout_s=5)
    finally:
        await service.close()
    assert time.monotonic() - started < 5
