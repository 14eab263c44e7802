"""Old conversations expire, and a failing store is probed until it serves again.

Every offer and socket without a `session_id` starts a conversation, and ADK never
deletes one: without retention the store only grows. `expire_sessions` deletes this
app's conversations untouched for longer than the retention (`update_time`, which
ADK sets on every stored event), oldest first, at most `batch` per pass, each with
its events. Safe with any number of workers and instances at once: a session is
deleted only if it is still old when deleted (a conversation resumed meanwhile
stays), and a row another worker deleted first is simply not counted again.

`store_upkeep` is one app-lifetime task per process: while the store is failing it
probes it every `probe_interval_s` (a success ends the outage, so `store_ready()`
recovers without waiting for a call); otherwise it runs a retention pass every
`pass_interval_s` (at once again while a full batch was expired: a backlog drains
in bounded steps).
An ADK-facing helper: imports google.adk and sqlalchemy, and the gateway's counters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from google.adk.sessions import BaseSessionService, DatabaseSessionService
from sqlalchemy import DateTime, column, delete, select, table

from gateway.adk.sessions import probe_store
from gateway.adk.store_guard import HEALTH, failure_reason, is_store_failure
from gateway.metrics.counters import COUNTERS

logger = logging.getLogger(__name__)

#: Conversations deleted per pass at most (one short transaction).
EXPIRY_BATCH = 500
#: Between retention passes.
PASS_INTERVAL_S = 600.0
#: Between probes of a failing store.
PROBE_INTERVAL_S = 5.0

# ADK's tables (google/adk/sessions/schemas/v0.py and v1.py name them alike); only
# the columns used here.
_SESSIONS = table(
    "sessions",
    column("app_name"),
    column("user_id"),
    column("id"),
    column("update_time", DateTime()),
)
_EVENTS = table("events", column("app_name"), column("user_id"), column("session_id"))


async def expire_sessions(
    service: BaseSessionService, *, app_name: str, older_than_s: float, batch: int = EXPIRY_BATCH
) -> int:
    """Delete up to `batch` of `app_name`'s conversations not updated for
    `older_than_s`, with their events; how many this call deleted. The in-memory
    store keeps nothing across restarts and is left alone."""
    if not isinstance(service, DatabaseSessionService):
        return 0
    await service.prepare_tables()
    # ADK stores naive UTC datetimes on SQLite and PostgreSQL (_NAIVE_DATETIME_DIALECTS).
    cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=older_than_s)
    old = (_SESSIONS.c.app_name == app_name) & (_SESSIONS.c.update_time < cutoff)
    deleted = 0
    async with service.db_engine.begin() as connection:
        found = await connection.execute(
            select(_SESSIONS.c.user_id, _SESSIONS.c.id)
            .where(old)
            .order_by(_SESSIONS.c.update_time)
            .limit(batch)
        )
        for user_id, session_id in found.all():
            this = (_SESSIONS.c.user_id == user_id) & (_SESSIONS.c.id == session_id)
            gone = await connection.execute(delete(_SESSIONS).where(old & this))
            if gone.rowcount:
                deleted += 1
                await connection.execute(
                    delete(_EVENTS).where(
                        (_EVENTS.c.app_name == app_name)
                        & (_EVENTS.c.user_id == user_id)
                        & (_EVENTS.c.session_id == session_id)
                    )
                )
    if deleted:
        COUNTERS.add("sessions_expired", deleted)
        logger.info("expired %d conversations older than %.1f days", deleted, older_than_s / 86400)
    return deleted


async def store_upkeep(
    service: BaseSessionService,
    *,
    app_name: str,
    retention_s: float,
    pass_interval_s: float = PASS_INTERVAL_S,
    probe_interval_s: float = PROBE_INTERVAL_S,
    batch: int = EXPIRY_BATCH,
) -> None:
    """Probe a failing store; expire old conversations (`retention_s` 0: never).
    Runs until cancelled (an app-lifetime task)."""
    next_pass = time.monotonic()
    while True:
        if HEALTH.failing_since is not None:
            await probe_store(service, app_name=app_name)
        elif retention_s > 0 and time.monotonic() >= next_pass:
            full = await _expiry_pass(service, app_name, retention_s, batch)
            next_pass = time.monotonic() + (0.0 if full else pass_interval_s)
        await asyncio.sleep(probe_interval_s)


async def _expiry_pass(
    service: BaseSessionService, app_name: str, retention_s: float, batch: int
) -> bool:
    """One pass; whether it expired a full batch (more may be waiting)."""
    try:
        deleted = await expire_sessions(
            service, app_name=app_name, older_than_s=retention_s, batch=batch
        )
    except Exception as exc:  # boundary: a failed pass is retried at the next one
        if not is_store_failure(exc):
            logger.exception("session expiry failed")
        elif HEALTH.failing_since is None:
            HEALTH.failed("expiry", exc)
        else:
            logger.debug("session expiry failed: %s", failure_reason(exc))
        return False
    return deleted >= batch
