"""The ADK session service, chosen by URL (setting `session_url`, env `GATEWAY_SESSION_URL`).

- `sqlite+aiosqlite:///var/sessions.db` (default): an embedded SQLite file, created
  with its directory on first use; several processes on one machine may share it.
- `postgresql+asyncpg://user:pass@host:5432/db`: for deployments with several
  gateway instances.
- `memory://`: in-process only, for tests and demos; lost on exit.

Both database URLs use ADK's `DatabaseSessionService` (one schema for both), guarded
by `adk/store_guard.py` (failures retried, counted, told to the call), which stores
every non-partial event: final transcriptions, typed turns, tool calls and
`live_session_resumption_update`s, so a later call (in any process, on any instance)
finds the history and the newest resumption handle. Audio is not stored.

Start-up (`check_session_service`) creates ADK's tables under a PostgreSQL advisory
lock (replicas starting together otherwise race in `CREATE TABLE`:
`UniqueViolationError ... pg_type_typname_nsp_index`) and writes and deletes a probe
session, so a read-only file, directory, database or role stops start-up with a
one-line reason. SQLite runs in WAL mode with write transactions taken up front
(`BEGIN IMMEDIATE`), so concurrent writers queue on the busy timeout instead of
failing with "database is locked" (measured: 76 of a 200-session burst failed).
`store_ready()` is the readiness seam. Retention: `adk/retention.py`.
An ADK-facing helper: imports google.adk and sqlalchemy, nothing from the gateway core.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from google.adk.sessions import BaseSessionService, DatabaseSessionService, InMemorySessionService
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from gateway.adk.store_guard import HEALTH, GuardedSessionService, failure_reason

logger = logging.getLogger(__name__)

MEMORY_URL = "memory://"
#: Async drivers ADK's DatabaseSessionService can use, by backend.
_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}
_PROBE_USER = "__gateway_probe__"
#: The PostgreSQL advisory lock held while ADK creates its tables (any constant
#: 64-bit key; "adk-gw" in ASCII), so replicas starting together take turns.
SCHEMA_LOCK_KEY = 0x61646B2D6777
#: How long a SQLite writer waits for another one before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30.0


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
    sqlite_file = parsed.get_backend_name() == "sqlite" and parsed.database != ":memory:"
    if sqlite_file:
        assert parsed.database is not None
        try:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SessionStoreError(f"session store directory: {exc}") from None
        # No pool: each operation opens and closes the file, so an idle gateway holds
        # no connection (nor aiosqlite thread) and other processes see its commits.
        engine_kwargs["poolclass"] = NullPool
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    try:
        url_text = parsed.render_as_string(hide_password=False)
        service = GuardedSessionService(db_url=url_text, **engine_kwargs)
    except ValueError as exc:
        raise SessionStoreError(f"session_url {redact_url(url)}: {exc}") from None
    if sqlite_file:
        _serialize_sqlite_writers(service)
    return service


def _serialize_sqlite_writers(service: DatabaseSessionService) -> None:
    """WAL (readers never wait for the writer) and `BEGIN IMMEDIATE` for transactions
    that may write. In SQLite's default deferred mode a transaction that reads, then
    writes (ADK's create and append do) cannot wait for a concurrent writer: SQLite
    returns "database is locked" at once instead of using the busy timeout
    (sqlite.org/lang_transaction.html). The recipe that lets SQLAlchemy emit BEGIN is
    SQLAlchemy's own ("Enabling Non-Legacy SQLite Transactional Modes", sqlite/base.py)."""
    sync_engine = service.db_engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get("read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


async def check_session_service(
    service: BaseSessionService, *, app_name: str, timeout_s: float = 30.0
) -> None:
    """At start-up: create the tables (one replica at a time) and write, read and
    delete a probe session, so a store that cannot serve calls fails here with a
    one-line `SessionStoreError`; then `store_ready()` turns true."""
    if isinstance(service, DatabaseSessionService):
        _check_sqlite_writable(service)
    try:
        async with asyncio.timeout(timeout_s):
            if isinstance(service, DatabaseSessionService):
                await _prepare_tables(service)
            await _probe_write(service, app_name=app_name)
    except TimeoutError:
        raise SessionStoreError(f"session store did not answer within {timeout_s:.0f} s") from None
    except Exception as exc:  # boundary: any driver error means the store is unusable
        logger.debug("session store check failed", exc_info=True)
        raise SessionStoreError(f"session store unavailable ({failure_reason(exc)})") from None
    HEALTH.checked = True


def _check_sqlite_writable(service: DatabaseSessionService) -> None:
    """A SQLite file needs its directory writable too (its WAL and shared-memory files
    live beside it); SQLite itself only says "unable to open database file"."""
    url = service.db_engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    path = Path(url.database).expanduser()
    for where in (path.parent, path):
        if where.exists() and not os.access(where, os.W_OK):
            kind = "directory" if where.is_dir() else "file"
            raise SessionStoreError(
                f"session store unavailable ({kind} {where} is read-only; SQLite needs the "
                "file and its directory writable)"
            )


async def _prepare_tables(service: DatabaseSessionService) -> None:
    """ADK's `prepare_tables`, under a PostgreSQL advisory lock: ADK checks for each
    table, then creates it, so replicas starting together on a fresh database race
    (all but one failed with `UniqueViolationError ... pg_type_typname_nsp_index`).
    The lock is held by its own connection for the session (released by unlock, or
    by the server if this process dies)."""
    if service.db_engine.dialect.name != "postgresql":
        await service.prepare_tables()
        return
    async with service.db_engine.connect() as lock_holder:
        await lock_holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        try:
            await service.prepare_tables()
        finally:
            unlock = text("SELECT pg_advisory_unlock(:key)")
            await lock_holder.execute(unlock, {"key": SCHEMA_LOCK_KEY})


async def _probe_write(service: BaseSessionService, *, app_name: str) -> None:
    """Create, read back and delete a session of a user no caller can be."""
    # ADK's own methods, not the guard's: a probe is neither retried nor counted.
    plain = DatabaseSessionService if isinstance(service, DatabaseSessionService) else type(service)
    probe_id = f"probe-{uuid.uuid4().hex}"
    await plain.create_session(service, app_name=app_name, user_id=_PROBE_USER, session_id=probe_id)
    try:
        found = await plain.get_session(
            service, app_name=app_name, user_id=_PROBE_USER, session_id=probe_id
        )
        if found is None:
            raise RuntimeError("a session written was not found again")
    finally:
        await plain.delete_session(
            service, app_name=app_name, user_id=_PROBE_USER, session_id=probe_id
        )


def store_ready() -> bool:
    """Whether this process's session store serves: the start-up check passed and no
    operation has failed since the last one that succeeded (`adk/store_guard.py`).
    The readiness seam: issue 14's `/readyz` answers 503 while this is false.
    Cheap (no I/O); `probe_store` is the active check that ends an outage."""
    return HEALTH.ready


async def probe_store(
    service: BaseSessionService, *, app_name: str, timeout_s: float = 5.0
) -> bool:
    """Write, read and delete a probe session now; whether that worked. A success
    ends an outage (`store_ready()` turns true again); a failure starts one. Called
    by the store upkeep task (`adk/retention.py`) while the store is failing."""
    try:
        async with asyncio.timeout(timeout_s):
            await _probe_write(service, app_name=app_name)
    except Exception as exc:  # boundary: whatever failed, the store does not serve
        if HEALTH.failing_since is None:
            HEALTH.failed("probe", exc)
        return False
    HEALTH.served()
    return True


async def close_session_service(service: BaseSessionService, timeout_s: float = 5.0) -> None:
    """Release a database store's connections (the in-memory store holds none)."""
    if isinstance(service, DatabaseSessionService):
        async with asyncio.timeout(timeout_s):
            await service.close()
