"""The live calls of one gateway process: admission, lookup, hang-up, shutdown.

Owns every call task (named `{call_id}`) for the life of the app. Speaks SDP
strings and call ids to `signaling.py`; knows the call module and aiortc
configuration, not HTTP and not ADK. A call id names the worker process that owns
the call (`call_owner`), so any worker can route a request for it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiortc import RTCConfiguration, RTCPeerConnection

from gateway.agent_api import AgentConnector, Modality
from gateway.calls.call import CallHandle, CallSpec, run_call
from gateway.cluster.load_board import WorkerLoad
from gateway.errors import AtCapacity, UnknownCall
from gateway.rtc import peer_connection

logger = logging.getLogger(__name__)

#: How long an offer may take to be answered (ICE gathering, agent session start).
ANSWER_TIMEOUT_S = 15.0
#: How long a hung-up call may take to release everything.
HANGUP_TIMEOUT_S = 5.0


#: Random bytes in a call id (unguessable), after the owning worker's index.
CALL_ID_RANDOM_BYTES = 16
_WORKER_INDEX_BYTES = 2
_CALL_ID = re.compile(r"^[A-Za-z0-9_-]{24}$")  # base64url of 2 + 16 bytes, no padding


@dataclass(frozen=True, slots=True)
class Answer:
    call_id: str
    session_id: str
    sdp: str
    #: The process that owns the call (a worker's pid in a multi-process gateway).
    pid: int = field(default_factory=os.getpid)


def new_call_id(worker: int = 0) -> str:
    """The owning worker's index and 128 random bits, URL-safe: unguessable, and
    opaque to the caller (24 characters)."""
    raw = worker.to_bytes(_WORKER_INDEX_BYTES, "big") + secrets.token_bytes(CALL_ID_RANDOM_BYTES)
    return base64.urlsafe_b64encode(raw).decode("ascii")


def call_owner(call_id: str) -> int | None:
    """The index of the worker that made `call_id`; None if it is not a call id."""
    if not _CALL_ID.match(call_id):
        return None
    try:
        raw = base64.urlsafe_b64decode(call_id)
    except (binascii.Error, ValueError):
        return None
    return int.from_bytes(raw[:_WORKER_INDEX_BYTES], "big")


class CallService(Protocol):
    """What the HTTP edge needs from the gateway's calls, in one process or many."""

    async def accept_offer(
        self, offer_sdp: str, *, user_id: str, session_id: str | None, modality: Modality
    ) -> Answer: ...

    async def add_candidates(self, call_id: str, sdpfrag: str) -> None: ...

    async def hang_up(self, call_id: str) -> None: ...

    @property
    def live_calls(self) -> int:
        """Calls of this process."""
        ...

    def workers(self) -> list[WorkerLoad]:
        """Every process of the gateway and its live calls (this one included)."""
        ...


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
        worker: int = 0,
        on_count: Callable[[int], None] | None = None,
    ) -> None:
        """`worker` goes into every call id; `on_count` hears the number of live
        calls each time it changes (the workers' shared load board)."""
        self._connector = connector
        self._rtc_configuration = rtc_configuration
        self.max_calls = max_calls
        self._setup_timeout_s = setup_timeout_s
        self._allow_loopback = allow_loopback_candidates
        self._worker = worker
        self._on_count = on_count
        self._calls: dict[str, CallHandle] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def live_calls(self) -> int:
        return len(self._calls)

    def workers(self) -> list[WorkerLoad]:
        return [WorkerLoad(os.getpid(), self.live_calls)]

    async def accept_offer(
        self, offer_sdp: str, *, user_id: str, session_id: str | None, modality: Modality
    ) -> Answer:
        """Start a call from an offer; raise a `GatewayError` for anything unusable."""
        if len(self._calls) >= self.max_calls:
            raise AtCapacity("the gateway is at capacity; try again shortly")
        peer_connection.validate_offer(offer_sdp)
        offer_sdp = peer_connection.filter_candidate_lines(
            offer_sdp, allow_loopback=self._allow_loopback
        )
        call_id = new_call_id(self._worker)
        handle = CallHandle(call_id, CallSpec(offer_sdp, user_id, session_id, modality))
        pc = peer_connection.new_peer_connection(self._rtc_configuration)
        self._calls[call_id] = handle
        self._count_changed()
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
            await peer_connection.add_remote_candidates(
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
            self._count_changed()

    def _count_changed(self) -> None:
        if self._on_count is not None:
            self._on_count(len(self._calls))

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
