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
import logging
import os
from collections.abc import Callable

from aiortc import RTCConfiguration

from gateway.agent_api import AgentConnector, Modality
from gateway.calls.call import Call
from gateway.calls.call_ids import new_call_id
from gateway.calls.service import ANSWER_TIMEOUT_S, Answer, CallRequest, WorkerLoad
from gateway.errors import AtCapacity, TooManyPending, UnknownCall
from gateway.metrics.counters import AGENT_HEALTH
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
        rtc_configuration: RTCConfiguration,
        *,
        max_calls: int,
        setup_timeout_s: float = 30.0,
        ice_policy: IcePolicy | None = None,
        max_pending_per_source: int = DEFAULT_MAX_PENDING_PER_SOURCE,
        worker: int = 0,
        on_count: Callable[[int], None] | None = None,
    ) -> None:
        """`worker` goes into every call id; `on_count` hears the number of live
        calls each time it changes (the workers' shared load board)."""
        self._connector = connector
        self._rtc_configuration = rtc_configuration
        self.max_calls = max_calls
        self._setup_timeout_s = setup_timeout_s
        self._ice_policy = ice_policy or IcePolicy()
        self._max_pending_per_source = max_pending_per_source
        self._worker = worker
        self._on_count = on_count
        self._calls: dict[str, Call] = {}

    @property
    def live_calls(self) -> int:
        return len(self._calls)

    def workers(self) -> list[WorkerLoad]:
        return [WorkerLoad(os.getpid(), self.live_calls, AGENT_HEALTH.values())]

    async def accept_offer(
        self,
        offer_sdp: str,
        *,
        user_id: str,
        session_id: str | None,
        modality: Modality,
        source: str = "",
    ) -> Answer:
        """Start a call from an offer; raise a `GatewayError` for anything unusable."""
        if len(self._calls) >= self.max_calls:
            raise AtCapacity("the gateway is at capacity; try again shortly")
        if source and self.pending_from(source) >= self._max_pending_per_source:
            raise TooManyPending("too many calls from this address are still connecting")
        call = Call(
            new_call_id(self._worker),
            CallRequest(offer_sdp, user_id, session_id, modality, source),
            self._connector,
            self._rtc_configuration,
            setup_timeout_s=self._setup_timeout_s,
            ice_policy=self._ice_policy,
            on_ended=self._forget,
        )
        self._calls[call.call_id] = call
        self._count_changed()
        call.start()
        answer = await call.answer(ANSWER_TIMEOUT_S)
        logger.info("call %s accepted (%s mode)", call.call_id, modality.value)
        return answer

    async def add_candidates(self, call_id: str, sdpfrag: str) -> None:
        await self.get(call_id).add_candidates(sdpfrag)

    async def hang_up(self, call_id: str) -> None:
        """End a call and wait (bounded) until it has released everything."""
        await self.get(call_id).hang_up("caller hung up")

    async def close(self) -> None:
        """Hang up every call (gateway shutdown), bounded in time."""
        calls = list(self._calls.values())
        await asyncio.gather(*(call.hang_up("gateway shutting down") for call in calls))

    def pending_from(self, source: str) -> int:
        """Calls from `source` whose media has not connected yet."""
        return sum(
            1 for c in self._calls.values() if c.request.source == source and not c.connected
        )

    def get(self, call_id: str) -> Call:
        """The live call `call_id`; `UnknownCall` if there is none."""
        call = self._calls.get(call_id)
        if call is None:
            raise UnknownCall("no such call")
        return call

    def _forget(self, call: Call) -> None:
        self._calls.pop(call.call_id, None)
        self._count_changed()

    def _count_changed(self) -> None:
        if self._on_count is not None:
            self._on_count(len(self._calls))
