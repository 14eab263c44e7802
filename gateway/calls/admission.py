"""The live sessions of one process, WebRTC calls and WebSockets alike: one budget.

A call and a WebSocket session each hold a live agent session, so both count
against the process's share of `max_calls`, and against the per-user limit
(`calls_per_user`). `acquire` refuses with `AtCapacity` (503) or
`TooManySessions` (429), or `Draining` (503) once the process drains, and returns
a `Ticket` that gives the place back once. The number in use is reported to
`on_count` (the workers' load board) and to the `gateway_calls_live` gauge.
Standard library and the gateway's errors, counters and instruments only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from gateway.errors import AtCapacity, Draining, TooManySessions
from gateway.metrics.counters import COUNTERS
from gateway.metrics.instruments import CALLS_ADMITTED, CALLS_LIVE


class Ticket:
    """One admitted session; `release` (idempotent) gives its place back."""

    def __init__(self, admission: Admission, user_id: str) -> None:
        self._admission = admission
        self.user_id = user_id
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._admission._release(self.user_id)


class Admission:
    """At most `capacity` sessions at once, at most `per_user` of one user (none for
    exempt principals: admin keys and anonymous mode)."""

    def __init__(
        self,
        capacity: int,
        per_user: int | None = None,
        on_count: Callable[[int], None] | None = None,
    ) -> None:
        self.capacity = capacity
        self.per_user = per_user
        self._on_count = on_count
        self._by_user: Counter[str] = Counter()
        self.in_use = 0
        #: Set when the process drains (gateway/ops/drain.py): nothing more is admitted.
        self.draining = False

    def acquire(self, user_id: str, *, exempt: bool = False) -> Ticket:
        if self.draining:
            raise Draining("the gateway is draining; call again (another instance answers)")
        if self.in_use >= self.capacity:
            raise AtCapacity("the gateway is at capacity; try again shortly")
        if not exempt and self.per_user is not None and self._by_user[user_id] >= self.per_user:
            COUNTERS.add("sessions_per_user_refused")
            raise TooManySessions(
                f"at most {self.per_user} calls at once per user; hang one up first"
            )
        self.in_use += 1
        self._by_user[user_id] += 1
        CALLS_ADMITTED.inc()
        self._changed()
        return Ticket(self, user_id)

    def _release(self, user_id: str) -> None:
        self.in_use -= 1
        self._by_user[user_id] -= 1
        if self._by_user[user_id] <= 0:
            del self._by_user[user_id]
        self._changed()

    def _changed(self) -> None:
        CALLS_LIVE.set(self.in_use)
        if self._on_count is not None:
            self._on_count(self.in_use)
