"""Gemini Live session resumption handles: keep the newest, find it again later.

The server sends `sessionResumptionUpdate`s; while it is generating they carry no
handle (`resumable: false`). ADK copies every update into its own slot, so such an
update *clears* ADK's handle, and a connection dropped mid-reply then ends
`run_live` with an error instead of reconnecting. `HandleKeeper` keeps the newest
non-empty handle instead. ADK's session service persists the update events, so
`latest_handle` finds the newest handle of a conversation in a later call, in any
process (`open_conversation`). Handles are valid for 2 hours on the server.
`ensure_conversation` creates a conversation under an id the caller chose (ADK's
bidi-demo names its sessions), so `open_conversation` finds it.
An ADK-facing helper: imports google.adk types and the gateway's errors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from google.adk.events import Event
from google.adk.sessions import BaseSessionService, Session

from gateway.adk.store_guard import SessionStoreUnavailable
from gateway.errors import AgentUnavailable, UnknownSession

logger = logging.getLogger(__name__)


def handle_of(event: Event) -> str | None:
    """The resumption handle an event carries, if any (empty updates carry none)."""
    update = event.live_session_resumption_update
    if update is None or not update.new_handle or update.resumable is False:
        return None
    return update.new_handle


def latest_handle(session: Session, *, max_age_s: float, now: float | None = None) -> str | None:
    """The newest usable handle stored with `session`, or None (none, or too old)."""
    now = time.time() if now is None else now
    for event in reversed(session.events):
        handle = handle_of(event)
        if handle is not None:
            return handle if now - event.timestamp <= max_age_s else None
    return None


@dataclass
class HandleKeeper:
    """The newest non-empty handle of one call, and how many updates were seen."""

    handle: str | None = None
    updates: int = 0
    empty_updates: int = 0

    def observe(self, event: Event) -> None:
        if event.live_session_resumption_update is None:
            return
        self.updates += 1
        handle = handle_of(event)
        if handle is None:
            self.empty_updates += 1
        else:
            self.handle = handle


async def open_conversation(
    service: BaseSessionService,
    *,
    app_name: str,
    user_id: str,
    session_id: str | None,
    resume: bool,
    handle_max_age_s: float,
) -> tuple[str, str | None]:
    """(session id, newest stored resumption handle) of a new conversation, or of the
    existing `session_id` (`UnknownSession` if there is none); a store that fails is
    `AgentUnavailable`."""
    try:
        if session_id is not None:
            found = await service.get_session(
                app_name=app_name, user_id=user_id, session_id=session_id
            )
            if found is None:
                raise UnknownSession("no conversation with that session_id")
            if not resume:
                return session_id, None
            return session_id, latest_handle(found, max_age_s=handle_max_age_s)
        created = await service.create_session(app_name=app_name, user_id=user_id)
        return created.id, None
    except UnknownSession:
        raise
    except Exception as exc:  # boundary: the session store is down or misconfigured
        _log_failure(exc)
        raise AgentUnavailable("the conversation store is unavailable") from exc


async def ensure_conversation(
    service: BaseSessionService, *, app_name: str, user_id: str, session_id: str
) -> bool:
    """Create `user_id`'s conversation `session_id` unless it exists, as ADK's guide
    recommends (get, then create with that id); whether it was created. Sockets racing
    to create it all succeed (the losers' create fails: `AlreadyExistsError`, or the
    database's unique key). A store that fails is `AgentUnavailable`."""

    async def exists() -> bool:
        found = await service.get_session(app_name=app_name, user_id=user_id, session_id=session_id)
        return found is not None

    try:
        if await exists():
            return False
        try:
            await service.create_session(app_name=app_name, user_id=user_id, session_id=session_id)
        except Exception:
            if await exists():
                return False  # created by another socket between our get and create
            raise
        return True
    except Exception as exc:  # boundary: the session store is down or misconfigured
        _log_failure(exc)
        raise AgentUnavailable("the conversation store is unavailable") from exc


def _log_failure(exc: Exception) -> None:
    """A failure the store guard has not logged (it logs one line per outage)."""
    if isinstance(exc, SessionStoreUnavailable):
        logger.debug("session store unavailable: %s", exc)
    else:
        logger.error("session service failed: %s", type(exc).__name__, exc_info=True)
