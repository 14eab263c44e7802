"""The live calls of one gateway process: admission, lookup, hang-up, shutdown.

Owns every call task (named `{call_id}`) for the life of the app. Speaks SDP
strings and call ids to `signaling.py`; knows the call module and aiortc
configuration, not HTTP and not ADK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCPeerConnection

from gateway import peer
from gateway.agent_api import AgentConnector, Modality
from gateway.call import CallHandle, CallSpec, run_call
from gateway.errors import AtCapacity, UnknownCall

logger = logging.getLogger(__name__)

#: How long an offer may take to be answered (ICE gathering, agent session start).
ANSWER_TIMEOUT_S = 15.0
#: How long a hung-up call may take to release everything.
HANGUP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Answer:
    call_id: str
    session_id: str
    sdp: str


def new_call_id() -> str:
    """128 random bits, URL-safe: unguessable, and opaque to the caller."""
    return secrets.token_urlsafe(16)


class CallManager:
    """Accepts offers into calls and keeps track of them until they end."""

    def __init__(
        self,
        connector: AgentConnector,
        rtc_configuration: RTCConfiguration,
        *,
        max_calls: int,
        setup_timeout_s: float = 30.0,
        allow_loopback_candidates: bool = False,
    ) -> None:
        self._connector = connector
        self._rtc_configuration = rtc_configuration
        self.max_calls = max_calls
        self._setup_timeout_s = setup_timeout_s
        self._allow_loopback = allow_loopback_candidates
        self._calls: dict[str, CallHandle] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def live_calls(self) -> int:
        return len(self._calls)

    async def accept_offer(
        self, offer_sdp: str, *, user_id: str, session_id: str | None, modality: Modality
    ) -> Answer:
        """Start a call from an offer; raise a `GatewayError` for anything unusable."""
        if len(self._calls) >= self.max_calls:
            raise AtCapacity("the gateway is at capacity; try again shortly")
        peer.validate_offer(offer_sdp)
        offer_sdp = peer.filter_candidate_lines(offer_sdp, allow_loopback=self._allow_loopback)
        call_id = new_call_id()
        handle = CallHandle(call_id, CallSpec(offer_sdp, user_id, session_id, modality))
        pc = peer.new_peer_connection(self._rtc_configuration)
        self._calls[call_id] = handle
        task = asyncio.create_task(self._run(handle, pc), name=call_id)
        self._tasks[call_id] = task
        try:
            sdp, resolved_session = await asyncio.wait_for(
                asyncio.shield(handle.answer), ANSWER_TIMEOUT_S
            )
        except BaseException:
            handle.hang_up("offer failed")
            await self._wait_ended(call_id)
            raise
        logger.info("call %s accepted (%s mode)", call_id, modality.value)
        return Answer(call_id, resolved_session, sdp)

    async def add_candidates(self, call_id: str, sdpfrag: str) -> None:
        handle = self._get(call_id)
        if handle.pc is not None:
            await peer.add_remote_candidates(
                handle.pc, sdpfrag, allow_loopback=self._allow_loopback
            )

    async def hang_up(self, call_id: str) -> None:
        """End a call and wait (bounded) until it has released everything."""
        self._get(call_id).hang_up("caller hung up")
        await self._wait_ended(call_id)

    async def close(self) -> None:
        """Hang up every call (gateway shutdown), bounded in time."""
        for handle in list(self._calls.values()):
            handle.hang_up("gateway shutting down")
        await asyncio.gather(*(self._wait_ended(cid) for cid in list(self._tasks)))

    def _get(self, call_id: str) -> CallHandle:
        handle = self._calls.get(call_id)
        if handle is None:
            raise UnknownCall("no such call")
        return handle

    async def _run(self, handle: CallHandle, pc: RTCPeerConnection) -> None:
        try:
            await run_call(handle, self._connector, pc, setup_timeout_s=self._setup_timeout_s)
        finally:
            self._calls.pop(handle.call_id, None)
            self._tasks.pop(handle.call_id, None)

    async def _wait_ended(self, call_id: str) -> None:
        task = self._tasks.get(call_id)
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), HANGUP_TIMEOUT_S)
        except TimeoutError:
            logger.warning("call %s did not end in %.0f s; cancelling", call_id, HANGUP_TIMEOUT_S)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
