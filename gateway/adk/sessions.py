"""The ADK session service, chosen by URL (setting `session_url`, env `GATEWAY_SESSION_URL`).

- `sqlite+aiosqlite:///var/sessions.db` (default): an embedded SQLite file, created
  with its directory on first use; several processes on one machine may share it.
- `postgresql+asyncpg://user:pass@host:5432/db`: for deployments with several
  gateway instances.
- `memory://`: in-process only, for tests and demos; lost on exit.

Both database URLs use ADK's `DatabaseSessionService` (one schema for both), which
stores every non-partial event: final transcriptions, typed turns, tool calls and
`live_session_resumption_update`s, so a later call (in any process) finds the
history and the newest resumption handle. Audio is not stored.
An ADK-facing helper: imports google.adk and sqlalchemy, nothing from the gateway core.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from google.adk.sessions import BaseSessionService, DatabaseSessionService, InMemorySessionService
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

logger = logging.getLogger(__name__)

MEMORY_URL = "memory://"
#: Async drivers ADK's DatabaseSessionService can use, by backend.
_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}
_PROBE_USER = "__gateway_probe__"


class SessionStoreError(ValueError):
    """The session store URL is wrong or the store cannot be reached."""


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def parse_session_url(url: str) -> URL | None:
    """Validate a session URL; None means in memory. Raises `SessionStoreError`."""
    if url.strip() in {MEMORY_URL, "memory:", "memory"}:
        return None
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SessionStoreError(
            "session_url is not a URL; use sqlite+aiosqlite:///path, "
            "postgresql+asyncpg://user@host/db or memory://"
        ) from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend not in _DRIVERS:
        raise SessionStoreError(
            f"session_url {redact_url(url)}: unsupported database {backend!r} "
            "(use sqlite+aiosqlite, postgresql+asyncpg or memory://)"
        )
    if driver != _DRIVERS[backend]:
        raise SessionStoreError(
            f"session_url {redact_url(url)}: use the async driver "
            f"{backend}+{_DRIVERS[backend]}://, not {parsed.drivername}://"
        )
    if backend == "sqlite" and not parsed.database:
        raise SessionStoreError("session_url: SQLite needs a file path (sqlite+aiosqlite:///p)")
    return parsed


def build_session_service(url: str) -> BaseSessionService:
    """The session service for `url` (creating a SQLite file's directory)."""
    parsed = parse_session_url(url)
    if parsed is None:
        return InMemorySessionService()
    engine_kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite" and parsed.database != ":memory:":
        assert parsed.database is not None
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # No pool: each operation opens and closes the file, so an idle gateway holds
        # no connection (nor aiosqlite thread) and other processes see its commits.
        engine_kwargs["poolclass"] = NullPool
    try:
        url_text = parsed.render_as_string(hide_password=False)
        return DatabaseSessionService(db_url=url_text, **engine_kwargs)
    except ValueError as exc:
        raise SessionStoreError(f"session_url {redact_url(url)}: {exc}") from None


async def check_session_service(
    service: BaseSessionService, *, app_name: str, timeout_s: float = 5.0
) -> None:
    """Touch the store once (creating tables), so a bad store fails at start-up."""
    try:
        async with asyncio.timeout(timeout_s):
            await service.list_sessions(app_name=app_name, user_id=_PROBE_USER)
    except TimeoutError:
        raise SessionStoreError(f"session store did not answer within {timeout_s:.0f} s") from None
    except Exception as exc:  # boundary: any driver error means the store is unusable
        reason = type(exc).__name__
        logger.debug("session store check failed", exc_info=True)
        raise SessionStoreError(f"session store unavailable ({reason}: {exc})") from None


async def close_session_service(service: BaseSessionService, timeout_s: float = 5.0) -> None:
    """Release a database store's connections (the in-memory store holds none)."""
    if isinstance(service, DatabaseSessionService):
        async with asyncio.timeout(timeout_s):
            await service.close()
