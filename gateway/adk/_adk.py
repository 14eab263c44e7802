"""Every place the gateway reaches into google-adk's internals, and nowhere else.

1. The live request queue's backlog (`LiveRequestQueue._queue`): ADK's queue is
   unbounded, and a stalled upstream must not grow memory forever, so the bridge
   refuses caller audio past a bound (`agent_bridge._BoundedLiveRequestQueue`); the
   backlog is only visible on the private asyncio queue.
2. The Live API client of a `Gemini` model (`Gemini._live_api_client`): the
   pre-answer check (`adk/preflight.py`) opens one Live connection with exactly the
   client (credentials, endpoint, TLS settings) ADK's own `connect()` will use.
3. ADK's log line on a goAway (`google/adk/live/_live_llm_flow.py`: "Received go
   away signal"): ADK reconnects by itself inside `run_live` and yields nothing,
   so its INFO record is the one sign of a goAway; `watch_go_aways` counts them
   (the `gateway_upstream_goaways_total` metric).

3. A session's storage revision (`Session._storage_update_marker`): two calls on one
   conversation (a caller moving to another instance or worker while its old call
   is still up) each hold a copy; the one that writes second gets ADK's
   `StaleSessionError`, which ended its call. The store guard
   (`adk/store_guard.py`) adopts the stored revision and appends after the other
   call's events instead (`adopt_storage_revision`).

`shape_problems()` lists what no longer matches in the installed ADK;
`tests/test_seams.py` fails on any. Imports google.adk and google.genai only.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable

from google.adk.agents.live_request_queue import LiveRequestQueue
from google.adk.live import _live_llm_flow
from google.adk.models.google_llm import Gemini
from google.adk.sessions import DatabaseSessionService, Session
from google.genai import Client

_QUEUE_ATTR = "_queue"
_LIVE_CLIENT_ATTR = "_live_api_client"
_GO_AWAY_LOGGER = "google_adk.google.adk.live._live_llm_flow"
_GO_AWAY_PREFIX = "Received go away signal"
_MARKER_ATTR = "_storage_update_marker"


def queued_requests(queue: LiveRequestQueue) -> int:
    """Requests (audio, content, activity signals) waiting for ADK to take them."""
    pending: asyncio.Queue[object] = getattr(queue, _QUEUE_ATTR)
    return pending.qsize()


def live_api_client(model: Gemini) -> Client:
    """The google-genai client `model.connect()` opens its Live sessions with."""
    client: Client = getattr(model, _LIVE_CLIENT_ATTR)
    return client


class _GoAwayWatch(logging.Filter):
    """Hears ADK's goAway log record; lets records through only where the
    configuration would have (the logger's level was lowered to see INFO)."""

    def __init__(self, on_go_away: Callable[[], None]) -> None:
        super().__init__()
        self.on_go_away = on_go_away

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(_GO_AWAY_PREFIX):
            self.on_go_away()
        return record.levelno >= logging.getLogger().getEffectiveLevel()


def watch_go_aways(on_go_away: Callable[[], None]) -> None:
    """Call `on_go_away` on every goAway ADK's live flow handles (the last call wins)."""
    flow_logger = logging.getLogger(_GO_AWAY_LOGGER)
    for existing in flow_logger.filters:
        if isinstance(existing, _GoAwayWatch):
            existing.on_go_away = on_go_away
            return
    flow_logger.addFilter(_GoAwayWatch(on_go_away))
    flow_logger.setLevel(min(flow_logger.getEffectiveLevel(), logging.INFO))


def adopt_storage_revision(session: Session, stored: Session) -> None:
    """Make `session` current with `stored` (the same conversation just read back), so
    ADK's stale-writer check lets its next append through."""
    setattr(session, _MARKER_ATTR, getattr(stored, _MARKER_ATTR))
    session.last_update_time = stored.last_update_time


def shape_problems() -> list[str]:
    """What in the installed ADK no longer matches the touches above (empty: all do)."""
    problems = []
    queue_source = inspect.getsource(LiveRequestQueue)
    if f"self.{_QUEUE_ATTR}: asyncio.Queue[LiveRequest] = asyncio.Queue()" not in queue_source:
        problems.append("LiveRequestQueue no longer keeps its requests in an asyncio.Queue")
    if f"return await self.{_QUEUE_ATTR}.get()" not in queue_source:
        problems.append("LiveRequestQueue.get no longer reads that queue")
    if _LIVE_CLIENT_ATTR not in vars(Gemini):
        problems.append("Gemini has no _live_api_client any more")
    elif f"self.{_LIVE_CLIENT_ATTR}.aio.live.connect(" not in inspect.getsource(Gemini.connect):
        problems.append("Gemini.connect no longer opens its session with _live_api_client")
    flow_source = inspect.getsource(_live_llm_flow)
    if _live_llm_flow.logger.name != _GO_AWAY_LOGGER or (
        f"logger.info(f'{_GO_AWAY_PREFIX}" not in flow_source
    ):
        problems.append("ADK's live flow no longer logs goAway as the gateway expects")
    if _MARKER_ATTR not in Session.__private_attributes__:
        problems.append("Session has no _storage_update_marker any more")
    elif f"session.{_MARKER_ATTR} != storage_update_marker" not in inspect.getsource(
        DatabaseSessionService.append_event
    ):
        problems.append("DatabaseSessionService.append_event no longer checks that marker")
    return problems
