"""The live calls of one gateway process: admission, ids, lookup, shutdown.

The `CallService` of a one-process gateway (and each worker's local calls). Speaks
SDP strings and call ids to the edge; each `Call` owns everything else. A call id
names the worker process that owns the call (`call_ids`), so any worker can route a
request for it. Until its media connects, a call makes the gateway send ICE checks
to addresses its caller named: one source address may have at most
`max_pending_per_source` such calls in this process (`TooManyPending` beyond).
Knows the call, the ICE policy and aiortc's configuration type, not HTTP or ADK.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable

from aiortc import RTCConfiguration

from gateway.agent_api import AgentConnector, Modality
from gateway.auth.principal import Principal
from gateway.calls.admission import Admission, Ticket
from gateway.calls.call import Call, CallLimits
from gateway.calls.call_ids import new_call_id
from gateway.calls.service import ANSWER_TIMEOUT_S, Answer, CallRequest, WorkerLoad
from gateway.errors import Forbidden, TooManyPending, UnknownCall
from gateway.metrics.counters import COUNTERS
from gateway.rtc.ice import announce_public_address
from gateway.rtc.ice_policy import IcePolicy

#: Calls from one source address still connecting, per process, before more are
#: refused: each can make the gateway send ICE checks (see `rtc/ice_policy.py`).
DEFAULT_MAX_PENDING_PER_SOURCE = 8

logger = logging.getLogger(__name__)


class CallManager:
    """Accepts offers into calls and keeps track of them until they end."""

    def __init__(
        self,
        connector: AgentConnector,
        rtc_configuration: Callable[[], RTCConfiguration],
        *,
        admission: Admission,
        limits: CallLimits | None = None,
        ice_policy: IcePolicy | None = None,
        max_pending_per_source: int = DEFAULT_MAX_PENDING_PER_SOURCE,
        worker: int = 0,
        public_ip: str | None = None,
    ) -> None:
        """`admission` is the process's session budget (shared with the WebSocket
        transport); `rtc_configuration` makes each call's aiortc configuration (its
        ICE servers, TURN credentials minted afresh); `worker` goes into every call id;
        `public_ip` (behind a 1:1 NAT) is announced in the answers' host candidates."""
        self._connector = connector
        self._rtc_configuration = rtc_configuration
        self.admission = admission
        self._limits = limits or CallLimits()
        self._ice_policy = ice_policy or IcePolicy()
        self._max_pending_per_source = max_pending_per_source
        self._worker = worker
        self._public_ip = public_ip
        self._calls: dict[str, Call] = {}
        self._tickets: dict[str, Ticket] = {}
        self._moves: set[asyncio.Task[int]] = set()

    @property
    def live_calls(self) -> int:
        """Live sessions of this process: calls and WebSocket sessions alike."""
        return self.admission.in_use

    def workers(self) -> list[WorkerLoad]:
        return [WorkerLoad(os.getpid(), self.live_calls, COUNTERS.values())]

    def call_ids(self) -> list[str]:
        """The ids of this process's calls (the fleet registry maps each to this
        instance)."""
        return list(self._calls)

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
        """Start a call from an offer; raise a `GatewayError` for anything unusable.
        The call belongs to `user_id`; `requester` (None: trusted) is who asked;
        `source` is the client's address."""
        if source and self.pending_from(source) >= self._max_pending_per_source:
            raise TooManyPending("too many calls from this address are still connecting")
        ticket = self.admission.acquire(user_id, exempt=requester is None or requester.admin)
        try:
            call = Call(
                new_call_id(self._worker),
                CallRequest(offer_sdp, user_id, session_id, modality, source),
                self._connector,
                self._rtc_configuration(),
                limits=self._limits,
                ice_policy=self._ice_policy,
                on_ended=self._forget,
            )
        except BaseException:
            ticket.release()
            raise
        self._calls[call.call_id] = call
        self._tickets[call.call_id] = ticket
        call.start()
        answer = await call.answer(ANSWER_TIMEOUT_S)
        if self._public_ip is not None:
            sdp = announce_public_address(answer.sdp, self._public_ip)
            answer = dataclasses.replace(answer, sdp=sdp)
        logger.info("call %s accepted (%s mode)", call.call_id, modality.value)
        if session_id is not None:
            self.end_moved_calls_soon(user_id, answer.session_id, keep=answer.call_id)
        return answer

    def end_moved_calls_soon(self, user_id: str, session_id: str, *, keep: str) -> None:
        """End, in the background, this process's other calls of `user_id`'s
        conversation `session_id`: a newer call (`keep`) continues it."""
        task = asyncio.create_task(
            self.end_moved_calls(user_id, session_id, keep=keep), name=f"{keep}/moves"
        )
        self._moves.add(task)
        task.add_done_callback(self._moves.discard)

    async def end_moved_calls(self, user_id: str, session_id: str, *, keep: str) -> int:
        """End this process's calls of `user_id`'s conversation `session_id` other
        than `keep`; how many there were."""
        old = [
            c
            for c in self._calls.values()
            if c.call_id != keep and c.session_id == session_id and c.request.user_id == user_id
        ]
        for call in old:
            logger.info("call %s moved to call %s", call.call_id, keep)
        await asyncio.gather(*(call.moved() for call in old))
        return len(old)

    async def add_candidates(
        self,
        call_id: str,
        sdpfrag: str,
        *,
        requester: Principal | None = None,
        ice_tags: frozenset[str] | None = None,
    ) -> None:
        await self._owned(call_id, requester).add_candidates(sdpfrag, ice_tags=ice_tags)

    async def hang_up(self, call_id: str, *, requester: Principal | None = None) -> None:
        """End a call and wait (bounded) until it has released everything."""
        await self._owned(call_id, requester).hang_up("caller hung up")

    async def close(self) -> None:
        """Hang up every call (gateway shutdown), bounded in time."""
        calls = list(self._calls.values())
        await asyncio.gather(*(call.hang_up("gateway shutting down") for call in calls))
        await asyncio.gather(*self._moves, return_exceptions=True)

    def get(self, call_id: str) -> Call:
        """The live call `call_id`; `UnknownCall` if there is none."""
        call = self._calls.get(call_id)
        if call is None:
            raise UnknownCall("no such call")
        return call

    def pending_from(self, source: str) -> int:
        """Calls from `source` whose media has not connected yet."""
        return sum(
            1 for c in self._calls.values() if c.request.source == source and not c.connected
        )

    def _owned(self, call_id: str, requester: Principal | None) -> Call:
        """The call, if `requester` may act on it: its owner, an admin key, or a
        trusted caller (None); `Forbidden` otherwise."""
        call = self.get(call_id)
        if requester is not None and not requester.may_act_on(call.request.user_id):
            COUNTERS.add("forbidden")
            raise Forbidden("this call belongs to another user")
        return call

    def _forget(self, call: Call) -> None:
        self._calls.pop(call.call_id, None)
        ticket = self._tickets.pop(call.call_id, None)
        if ticket is not None:
            ticket.release()
