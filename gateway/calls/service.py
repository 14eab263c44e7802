"""What the edges need from the gateway's calls, in one process or many.

`CallService` is the seam between the HTTP edge (`signaling.py`) and whoever keeps
the calls: one process's `CallManager`, or a worker's `ClusterCalls` that also
reaches its siblings. Plain values and a protocol: imports the agent seam and the
principal only (the supervisor's load board uses `WorkerLoad`, so nothing heavy
may come in here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

from gateway.agent_api import Modality
from gateway.auth.principal import Principal

#: How long an offer may take to be answered (ICE gathering, agent session start).
ANSWER_TIMEOUT_S = 15.0
#: How long a hung-up call may take to release everything.
HANGUP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class CallRequest:
    """What the caller asked for."""

    offer_sdp: str
    user_id: str
    session_id: str | None
    modality: Modality
    #: Where the offer came from (the client's address; "" when unknown).
    source: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    call_id: str
    session_id: str
    sdp: str
    #: The process that owns the call (a worker's pid in a multi-process gateway).
    pid: int = field(default_factory=os.getpid)
    #: Names the call's ICE session (random per call; the HTTP edge's ETag).
    ice_tag: str = ""


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    """One gateway process, its live calls and its agent-health counters (in
    `gateway.metrics.counters.AGENT_HEALTH_NAMES` order)."""

    pid: int
    calls: int
    counters: tuple[int, ...] = ()


class CallService(Protocol):
    """The gateway's calls as the HTTP edge sees them."""

    async def accept_offer(
        self,
        offer_sdp: str,
        *,
        user_id: str,
        session_id: str | None,
        modality: Modality,
        requester: Principal | None = None,
        source: str = "",
    ) -> Answer:
        """Start a call owned by `user_id`; raise a `GatewayError` for anything
        unusable (bounded by `ANSWER_TIMEOUT_S`). `requester` is who asked (None: a
        trusted caller); per-user limits apply to non-admin requesters. `source` is
        the client's address: too many calls from one that are still connecting get
        `TooManyPending`."""
        ...

    async def add_candidates(
        self,
        call_id: str,
        sdpfrag: str,
        *,
        requester: Principal | None = None,
        ice_tags: frozenset[str] | None = None,
    ) -> None:
        """Trickle ICE; `Forbidden` unless `requester` owns the call (or is admin).
        `ice_tags`: the ICE sessions the caller means (its `If-Match`; "*" any, None
        unconditional): `PreconditionFailed` unless the call's is among them.
        `IceRestartUnsupported` for new ICE credentials (the call goes on)."""
        ...

    async def hang_up(self, call_id: str, *, requester: Principal | None = None) -> None:
        """End a call and wait (bounded by `HANGUP_TIMEOUT_S`) until it has released
        everything; `UnknownCall` if there is no such call, `Forbidden` unless
        `requester` owns it (or is admin)."""
        ...

    @property
    def live_calls(self) -> int:
        """Calls of this process."""
        ...

    def workers(self) -> list[WorkerLoad]:
        """Every process of the gateway and its live calls (this one included)."""
        ...
