"""Session store failures made visible, and retried where that is safe.

ADK's `DatabaseSessionService` raises whatever the driver raises. Inside `run_live`
that is lost: a user turn is stored *before* it is sent to the model, so a failing
store made ADK's send task die quietly (turns got no reply and no error event;
measured: 7 of 12 typed turns never stored, and no signal anywhere). So
`GuardedSessionService`:
- retries a failed operation (`RETRY_DELAYS_S`) unless the store is already known
  to be failing (then it fails fast: a call must not wait on a dead store per event);
- on an append that still fails, keeps the event in the call's in-memory session
  (the live conversation goes on; the model has its own context) and tells the call
  through `STORE_LISTENER` (the bridge sends the caller a non-fatal
  `session_store_unavailable` error, once per outage per call); the event is stored
  before the call's next one once the store serves again (`MAX_UNSAVED_EVENTS`);
- on a read that still fails (a `run_live` starting), raises `SessionStoreUnavailable`
  (the bridge ends the call with a fatal `session_store_unavailable` error);
- appends after another call's events when two calls share a conversation for a
  moment (a caller moving to another instance), instead of ADK's `StaleSessionError`;
- counts failures and retries in `/stats` (`session_store` section) and logs one
  line when an outage starts and one when it ends (`StoreHealth`), never one per event.

`STORE_LISTENER` is a context variable: the bridge sets it in the task that iterates
`run_live`, and ADK's own tasks (its send task appends the user's turns) inherit it.
An ADK-facing helper: imports google.adk, sqlalchemy and the gateway's counters.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.events import Event
from google.adk.sessions import BaseSessionService, DatabaseSessionService, Session
from google.adk.sessions.base_session_service import GetSessionConfig
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from gateway.adk import _adk
from gateway.metrics.counters import COUNTERS

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

#: Pauses before the retries of one operation: a dropped pooled connection or a
#: PostgreSQL fail-over heals in well under a second; longer would hold up the
#: caller's turn (ADK stores a typed turn before sending it to the model).
RETRY_DELAYS_S = (0.1, 0.4)

#: Appends retried after another call on the same conversation wrote first (each
#: retry reads the stored revision again; two calls rarely collide twice in a row).
STALE_RETRIES = 3
#: Events of one call kept while the store fails, to be stored once it serves again
#: (a typed turn with its answer is ~4 events); later ones are not stored.
MAX_UNSAVED_EVENTS = 500

#: Told whether the store just failed (False) or served (True) an append of the call
#: whose task set it (see the module docstring).
StoreListener = Callable[[bool], Awaitable[None]]
STORE_LISTENER: ContextVar[StoreListener | None] = ContextVar("store_listener", default=None)


class SessionStoreUnavailable(RuntimeError):
    """The session store failed an operation the conversation cannot do without."""


def is_store_failure(exc: BaseException) -> bool:
    """Whether `exc` is the store (driver, network, disk) failing, not a logic error
    (a duplicate key is ADK's business: it raises `AlreadyExistsError` for it)."""
    if isinstance(exc, IntegrityError | AlreadyExistsError):
        return False
    return isinstance(exc, SQLAlchemyError | OSError | TimeoutError | ConnectionError)


def failure_reason(exc: BaseException) -> str:
    """One line naming the failure: the driver's own message when there is one."""
    cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    while cause.__cause__ is not None:  # SQLAlchemy's adapted asyncpg error wraps asyncpg's
        cause = cause.__cause__
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {text}"[:300] if text else type(cause).__name__


@dataclass
class StoreHealth:
    """Whether this process's session store works, from what its operations saw."""

    checked: bool = False
    """The start-up check passed (tables ready, a write went through)."""
    failing_since: float | None = None
    failures_in_outage: int = 0

    @property
    def ready(self) -> bool:
        return self.checked and self.failing_since is None

    def failed(self, operation: str, exc: BaseException) -> None:
        COUNTERS.add("session_store_failures")
        self.failures_in_outage += 1
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            logger.error("session store failing (%s): %s", operation, failure_reason(exc))

    def served(self) -> None:
        if self.failing_since is None:
            return
        logger.warning(
            "session store serving again after %.1f s; %d operations failed meanwhile",
            time.monotonic() - self.failing_since,
            self.failures_in_outage,
        )
        self.failing_since = None
        self.failures_in_outage = 0

    def reset(self) -> None:
        """As at process start (tests)."""
        self.checked, self.failing_since, self.failures_in_outage = False, None, 0


#: This process's store health (one session store per process; tests that make a
#: store fail call `HEALTH.reset()` afterwards, as the state outlives the test).
HEALTH = StoreHealth()


class GuardedSessionService(DatabaseSessionService):
    """ADK's database session service, with failures retried, counted and told."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Events a failing store did not take, by in-memory session (`id`; dropped
        #: with the session object), saved before that session's next event.
        self._unsaved: dict[int, list[Event]] = {}
        self._saving_unsaved = asyncio.Lock()

    async def append_event(self, session: Session, event: Event) -> Event:
        if event.partial:
            return event  # ADK stores no partial event
        try:
            if id(session) in self._unsaved:
                async with self._saving_unsaved:  # once, in order, before this event
                    await self._retrying("append", self._save_unsaved, session)
            stored = await self._retrying("append", self._append_after_others, session, event)
        except SessionStoreUnavailable:
            self._keep_unsaved(session, event)
            await _tell_call(served=False)
            # Keep the event in this call's copy of the session: ADK's flow reads it.
            return await BaseSessionService.append_event(self, session, event)
        await _tell_call(served=True)
        return stored

    def _keep_unsaved(self, session: Session, event: Event) -> None:
        unsaved = self._unsaved.get(id(session))
        if unsaved is None:
            unsaved = self._unsaved[id(session)] = []
            weakref.finalize(session, self._unsaved.pop, id(session), None)
        if len(unsaved) < MAX_UNSAVED_EVENTS:
            unsaved.append(event)

    async def _save_unsaved(self, session: Session) -> None:
        """Store the events a failing store did not take, oldest first. They are in
        `session` already: ADK appends each to a copy, and `session` takes the
        copy's storage revision."""
        unsaved = self._unsaved.get(id(session), [])
        while unsaved:
            shadow = session.model_copy(update={"events": []})
            await self._append_after_others(shadow, unsaved[0])
            _adk.adopt_storage_revision(session, shadow)
            unsaved.pop(0)
        self._unsaved.pop(id(session), None)

    async def _append_after_others(self, session: Session, event: Event) -> Event:
        """ADK's append; when another call on this conversation wrote since this one
        read it (a caller moving between instances, both calls up for a moment),
        append after its events instead of failing with `StaleSessionError`."""
        for _ in range(STALE_RETRIES):
            try:
                return await super().append_event(session, event)
            except StaleSessionError:
                stored = await super().get_session(
                    app_name=session.app_name,
                    user_id=session.user_id,
                    session_id=session.id,
                    config=GetSessionConfig(num_recent_events=0),
                )
                if stored is None:
                    raise
                _adk.adopt_storage_revision(session, stored)
        return await super().append_event(session, event)

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        read = super().get_session
        return await self._retrying(
            "read", read, app_name=app_name, user_id=user_id, session_id=session_id, config=config
        )

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        create = super().create_session
        return await self._retrying(
            "create", create, app_name=app_name, user_id=user_id, state=state, session_id=session_id
        )

    async def _retrying(
        self, operation: str, call: Callable[_P, Awaitable[_T]], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """`call`, retried after store failures while the store is not known to be
        failing; `SessionStoreUnavailable` when it still fails."""
        delays = () if HEALTH.failing_since is not None else RETRY_DELAYS_S
        for attempt in range(len(delays) + 1):
            try:
                result = await call(*args, **kwargs)
            except Exception as exc:
                if not is_store_failure(exc):
                    raise
                if attempt < len(delays):
                    COUNTERS.add("session_store_retries")
                    await asyncio.sleep(delays[attempt])
                    continue
                HEALTH.failed(operation, exc)
                raise SessionStoreUnavailable(failure_reason(exc)) from exc
            HEALTH.served()
            return result
        raise AssertionError("unreachable")


async def _tell_call(*, served: bool) -> None:
    listener = STORE_LISTENER.get()
    if listener is not None:
        await listener(served)
