"""The live calls of one gateway process: admission, ids, lookup, shutdown.

The `CallService` of a one-process gateway (and each worker's local calls). Speaks
SDP strings and call ids to the edge; each `Call` owns everything else. A call id
names the worker process that owns the call (`call_ids`), so any worker can route a
request for it. Knows the call and aiortc's configuration type, not HTTP or ADK.
"""

from __future__ import annotations

import asyncio
import logging
import os

from aiortc import RTCConfiguration

from gateway.agent_api import AgentConnector, Modality
from gateway.auth.principal import Principal
from gateway.calls.admission import Admission, Ticket
from gateway.calls.call import Call, CallLimits
from gateway.calls.call_ids import new_call_id
from gateway.calls.service import ANSWER_TIMEOUT_S, Answer, CallRequest, WorkerLoad
from gateway.errors import Forbidden, UnknownCall
from gateway.metrics.counters import COUNTERS

logger = logging.getLogger(__name__)


class CallManager:
    """Accepts offers into calls and keeps track of them until they end."""

    def __init__(
        self,
        connector: AgentConnector,
        rtc_configuration: RTCConfiguration,
        *,
        admission: Admission,
        limits: CallLimits | None = None,
        allow_loopback_candidates: bool = False,
        worker: int = 0,
    ) -> None:
        """`admission` is the process's session budget (shared with the WebSocket
        transport); `worker` goes into every call id."""
        self._connector = connector
        self._rtc_configuration = rtc_configuration
        self.admission = admission
        self._limits = limits or CallLimits()
        self._allow_loopback = allow_loopback_candidates
        self._worker = worker
        self._calls: dict[str, Call] = {}
        self._tickets: dict[str, Ticket] = {}

    @property
    def live_calls(self) -> int:
        """Live sessions of this process: calls and WebSocket sessions alike."""
        return self.admission.in_use

    def workers(self) -> list[WorkerLoad]:
        return [WorkerLoad(os.getpid(), self.live_calls, COUNTERS.values())]

    async def accept_offer(
        self,
        offer_sdp: str,
        *,
        user_id: str,
        session_id: str | None,
        modality: Modality,
        requester: Principal | None = None,
    ) -> Answer:
        """Start a call from an offer; raise a `GatewayError` for anything unusable.
        The call belongs to `user_id`; `requester` (None: trusted) is who asked."""
        ticket = self.admission.acquire(user_id, exempt=requester is None or requester.admin)
        try:
            call = Call(
                new_call_id(self._worker),
                CallRequest(offer_sdp, user_id, session_id, modality),
                self._connector,
                self._rtc_configuration,
                limits=self._limits,
                allow_loopback_candidates=self._allow_loopback,
                on_ended=self._forget,
            )
        except BaseException:
            ticket.release()
            raise
        self._calls[call.call_id] = call
        self._tickets[call.call_id] = ticket
        call.start()
        answer = await call.answer(ANSWER_TIMEOUT_S)
        logger.info("call %s accepted (%s mode)", call.call_id, modality.value)
        return answer

    async def add_candidates(
        self, call_id: str, sdpfrag: str, *, requester: Principal | None = None
    ) -> None:
        await self._owned(call_id, requester).add_candidates(sdpfrag)

    async def hang_up(self, call_id: str, *, requester: Principal | None = None) -> None:
        """End a call and wait (bounded) until it has released everything."""
        await self._owned(call_id, requester).hang_up("caller hung up")

    async def close(self) -> None:
        """Hang up every call (gateway shutdown), bounded in time."""
        calls = list(self._calls.values())
        await asyncio.gather(*(call.hang_up("gateway shutting down") for call in calls))

    def get(self, call_id: str) -> Call:
        """The live call `call_id`; `UnknownCall` if there is none."""
        call = self._calls.get(call_id)
        if call is None:
            raise UnknownCall("no such call")
        return call

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
