"""One worker among several: new calls go to the least-loaded worker with room, and a
request for a call goes to the worker that owns it.

Workers talk HTTP to each other over unix sockets in the supervisor's private
directory (mode 0700, so only this user's processes can reach them). `internal_app`
serves a worker's own calls there; `ClusterCalls` is the `CallService` the public
app uses: it answers from the local `CallManager` or forwards, with bounded
timeouts. The load board (`load_board.py`) says where there is room; the owner of a
call re-checks its own capacity, so the gateway's total never exceeds `max_calls`.
May import aiohttp, the signaling edge, calls, the load board and errors; never aiortc
or ADK.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from gateway import signaling
from gateway.agent_api import Modality
from gateway.auth.principal import Principal, principal_from_json, principal_to_json
from gateway.calls.call_ids import call_owner
from gateway.calls.manager import CallManager
from gateway.calls.service import ANSWER_TIMEOUT_S, HANGUP_TIMEOUT_S, Answer, WorkerLoad
from gateway.cluster.load_board import LoadBoard
from gateway.errors import AtCapacity, GatewayError, UnknownCall, WorkerUnavailable
from gateway.metrics.counters import COUNTERS

logger = logging.getLogger(__name__)

#: A forwarded offer: the owner's own bound on answering, plus its clean-up, plus slack.
OFFER_FORWARD_TIMEOUT_S = ANSWER_TIMEOUT_S + HANGUP_TIMEOUT_S + 2.0
#: A forwarded hang-up or trickle: the owner's bound on hanging up, plus slack.
CALL_FORWARD_TIMEOUT_S = HANGUP_TIMEOUT_S + 3.0
_BASE = "http://worker"  # the host is ignored on a unix socket
LOCAL_CALLS_KEY = web.AppKey("local_calls", CallManager)


@dataclass(frozen=True, slots=True)
class Membership:
    """Where this worker stands: its index, every worker's share, the shared board."""

    index: int
    shares: tuple[int, ...]
    socket_dir: Path
    board: LoadBoard

    @property
    def share(self) -> int:
        return self.shares[self.index]

    def socket_path(self, index: int) -> str:
        return str(self.socket_dir / f"worker-{index}.sock")

    def count_calls(self, calls: int) -> None:
        self.board.set_calls(self.index, calls)

    def count_counters(self, counters: tuple[int, ...]) -> None:
        self.board.set_counters(self.index, counters)


class ClusterCalls:
    """The gateway's calls as seen from one worker: local ones and its siblings'."""

    def __init__(self, local: CallManager, member: Membership) -> None:
        self._local = local
        self._member = member
        self._sessions: dict[int, aiohttp.ClientSession] = {}
        #: Offers this worker is forwarding, by target: counted as load when placing,
        #: so a burst of offers arriving here spreads instead of piling on one sibling.
        self._placing: Counter[int] = Counter()
        self._moves: set[asyncio.Task[None]] = set()

    @property
    def live_calls(self) -> int:
        return self._local.live_calls

    def workers(self) -> list[WorkerLoad]:
        return [load for load in self._slots() if load is not None]

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
        """Answer on the least-loaded worker with room; 503 only when all are full.
        `source` goes with the offer: each worker counts a source's pending calls."""
        for index in self._placement_order():
            try:
                if index == self._member.index:
                    answer = await self._local.accept_offer(
                        offer_sdp,
                        user_id=user_id,
                        session_id=session_id,
                        modality=modality,
                        requester=requester,
                        source=source,
                    )
                else:
                    self._placing[index] += 1
                    try:
                        body = {
                            "sdp": offer_sdp,
                            "user_id": user_id,
                            "session_id": session_id,
                            "mode": modality.value,
                            "requester": principal_to_json(requester),
                            "source": source,
                        }
                        answer = await self._offer_to(index, body)
                    finally:
                        self._placing[index] -= 1
            except (AtCapacity, WorkerUnavailable) as exc:
                logger.debug("worker %d cannot take the call: %s", index, exc.code)
                continue
            if session_id is not None:  # the answering worker ends its own older calls
                self._announce_move(index, user_id, answer.session_id, answer.call_id)
            return answer
        raise AtCapacity("the gateway is at capacity; try again shortly")

    async def add_candidates(
        self,
        call_id: str,
        sdpfrag: str,
        *,
        requester: Principal | None = None,
        ice_tags: frozenset[str] | None = None,
    ) -> None:
        owner = self._owner(call_id)
        if owner == self._member.index:
            await self._local.add_candidates(
                call_id, sdpfrag, requester=requester, ice_tags=ice_tags
            )
            return
        headers = {"Content-Type": signaling.SDPFRAG_TYPE, **_requester_header(requester)}
        if ice_tags is not None:
            headers[ICE_TAGS_HEADER] = json.dumps(sorted(ice_tags))
        await self._forward(owner, "PATCH", call_id, data=sdpfrag, headers=headers)

    async def hang_up(self, call_id: str, *, requester: Principal | None = None) -> None:
        owner = self._owner(call_id)
        if owner == self._member.index:
            await self._local.hang_up(call_id, requester=requester)
            return
        await self._forward(owner, "DELETE", call_id, headers=_requester_header(requester))

    def _announce_move(self, answered_by: int, user_id: str, session_id: str, keep: str) -> None:
        """Every other worker ends its calls of the conversation `keep` continues."""
        for index in range(len(self._member.shares)):
            if index == answered_by:
                continue
            if index == self._member.index:
                self._local.end_moved_calls_soon(user_id, session_id, keep=keep)
                continue
            task = asyncio.create_task(
                self._send_move(
                    index, {"user_id": user_id, "session_id": session_id, "keep": keep}
                ),
                name=f"{keep}/moves/{index}",
            )
            self._moves.add(task)
            task.add_done_callback(self._moves.discard)

    async def _send_move(self, index: int, body: dict[str, str]) -> None:
        try:
            async with self._session(index).post(
                f"{_BASE}/internal/moves",
                json=body,
                timeout=aiohttp.ClientTimeout(total=CALL_FORWARD_TIMEOUT_S),
            ) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:  # a dead sibling has no calls
            logger.debug("worker %d did not hear of a moved call: %s", index, exc)

    async def close(self) -> None:
        await asyncio.gather(*self._moves, return_exceptions=True)
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    def _placement_order(self) -> list[int]:
        """Workers with room, least loaded first (relative to their share); this one
        first among equals, as it saves a hop."""
        me = self._member.index
        ranked = []
        for index, load in enumerate(self._slots()):
            if load is None:
                continue
            calls = load.calls + self._placing[index]
            share = self._member.shares[index]
            if calls < share:
                ranked.append((calls / share, index != me, index))
        return [index for *_, index in sorted(ranked)]

    def _slots(self) -> list[WorkerLoad | None]:
        """Every worker by index (None: not serving); this one's count straight
        from its calls, the fresher reading."""
        slots = [self._member.board.slot(i) for i in range(len(self._member.shares))]
        slots[self._member.index] = WorkerLoad(
            os.getpid(), self._local.live_calls, COUNTERS.values()
        )
        return slots

    def _owner(self, call_id: str) -> int:
        owner = call_owner(call_id)
        if owner is None or owner >= len(self._member.shares):
            raise UnknownCall("no such call")
        return owner

    def _session(self, index: int) -> aiohttp.ClientSession:
        session = self._sessions.get(index)
        if session is None or session.closed:
            connector = aiohttp.UnixConnector(path=self._member.socket_path(index))
            session = aiohttp.ClientSession(connector=connector)
            self._sessions[index] = session
        return session

    async def _offer_to(self, index: int, body: dict[str, Any]) -> Answer:
        try:
            async with self._session(index).post(
                f"{_BASE}/internal/offer",
                json=body,
                timeout=aiohttp.ClientTimeout(total=OFFER_FORWARD_TIMEOUT_S),
            ) as response:
                if response.status != 200:
                    raise await _error_from(response)
                answer = await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("worker %d did not take a forwarded offer: %r", index, exc)
            raise WorkerUnavailable("a worker did not answer; try again shortly") from None
        return Answer(
            answer["call_id"], answer["session_id"], answer["sdp"], answer["pid"], answer["ice_tag"]
        )

    async def _forward(self, index: int, method: str, call_id: str, **kwargs: Any) -> None:
        try:
            async with self._session(index).request(
                method,
                f"{_BASE}/internal/calls/{call_id}",
                timeout=aiohttp.ClientTimeout(total=CALL_FORWARD_TIMEOUT_S),
                **kwargs,
            ) as response:
                if response.status != 204:
                    raise await _error_from(response)
        except aiohttp.ClientConnectionError:
            # Nobody listens where the owner was: it died, and its calls with it.
            raise UnknownCall("no such call") from None
        except TimeoutError:
            raise WorkerUnavailable("the call's worker did not answer in time") from None


async def _error_from(response: aiohttp.ClientResponse) -> GatewayError:
    """The sibling's JSON error as the same gateway error here."""
    try:
        error = (await response.json())["error"]
        code, message = str(error["code"]), str(error["message"])
    except (aiohttp.ClientError, ValueError, KeyError, TypeError):
        code, message = GatewayError.code, "a worker failed"
    retry_after = response.headers.get("Retry-After")
    return GatewayError.from_wire(
        code,
        message,
        http_status=response.status,
        retry_after_s=int(retry_after) if retry_after and retry_after.isdigit() else None,
    )


#: Who asked, on a request forwarded to the call's worker (JSON `Principal` or null).
REQUESTER_HEADER = "X-Gateway-Requester"
#: The ICE session tags a forwarded trickle is conditional on (JSON list; absent:
#: unconditional), so the owner checks the caller's `If-Match`.
ICE_TAGS_HEADER = "X-Gateway-Ice-Tags"


def _requester_header(requester: Principal | None) -> dict[str, str]:
    return {REQUESTER_HEADER: principal_to_json(requester)}


class _InternalOffer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sdp: str
    user_id: str
    session_id: str | None
    mode: Modality
    requester: str = "null"
    source: str = ""


class _Move(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str
    session_id: str
    keep: str


def internal_app(local: CallManager, *, max_offer_bytes: int) -> web.Application:
    """What a worker serves its siblings on its unix socket: its own calls, no forwarding."""
    app = web.Application(
        middlewares=[signaling.error_middleware], client_max_size=4 * max_offer_bytes
    )
    app[LOCAL_CALLS_KEY] = local

    async def offer(request: web.Request) -> web.Response:
        body = _InternalOffer.model_validate_json(await request.read())
        answer = await local.accept_offer(
            body.sdp,
            user_id=body.user_id,
            session_id=body.session_id,
            modality=body.mode,
            requester=principal_from_json(body.requester),
            source=body.source,
        )
        return web.json_response(
            {
                "call_id": answer.call_id,
                "session_id": answer.session_id,
                "sdp": answer.sdp,
                "pid": answer.pid,
                "ice_tag": answer.ice_tag,
            }
        )

    async def patch(request: web.Request) -> web.Response:
        requester = principal_from_json(request.headers.get(REQUESTER_HEADER))
        sdpfrag = await request.text()
        tags = request.headers.get(ICE_TAGS_HEADER)
        await local.add_candidates(
            request.match_info["call_id"],
            sdpfrag,
            requester=requester,
            ice_tags=None if tags is None else frozenset(json.loads(tags)),
        )
        return web.Response(status=204)

    async def delete(request: web.Request) -> web.Response:
        requester = principal_from_json(request.headers.get(REQUESTER_HEADER))
        await local.hang_up(request.match_info["call_id"], requester=requester)
        return web.Response(status=204)

    async def moves(request: web.Request) -> web.Response:
        body = _Move.model_validate_json(await request.read())
        local.end_moved_calls_soon(body.user_id, body.session_id, keep=body.keep)
        return web.Response(status=204)

    app.router.add_post("/internal/offer", offer)
    app.router.add_post("/internal/moves", moves)
    app.router.add_patch("/internal/calls/{call_id}", patch)
    app.router.add_delete("/internal/calls/{call_id}", delete)
    return app
