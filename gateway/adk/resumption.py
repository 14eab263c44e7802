"""Gemini Live session resumption handles: keep the newest, find it again later.

The server sends `sessionResumptionUpdate`s; while it is generating they carry no
handle (`resumable: false`). ADK copies every update into its own slot, so such an
update *clears* ADK's handle, and a connection dropped mid-reply then ends
`run_live` with an error instead of reconnecting. `HandleKeeper` keeps the newest
non-empty handle instead. ADK's session service persists the update events, so
`latest_handle` finds the newest handle of a conversation in a later call, in any
process. Handles are valid for 2 hours on the server.
An ADK-facing helper: imports google.adk types only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from google.adk.events import Event
from google.adk.sessions import Session


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
