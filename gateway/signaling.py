"""HTTP signaling (aiohttp): WHIP-shaped `/calls`, JSON `/offer`, `/ice-servers`,
`/healthz`, `/stats`.

Speaks HTTP and strings: SDP in, SDP out. Client mistakes become 4xx here, in one
place (`error_middleware`); nothing below this module knows about HTTP. Whether the
gateway is one process or several is behind the `CallService`; answers name the
process that owns the call (`X-Gateway-Worker: <pid>`). Never imports aiortc or ADK
(`rtc/ice_servers.py` is plain data).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.agent_api import Modality
from gateway.auth.http import EDGE_AUTH_KEY, granted_session
from gateway.auth.principal import Principal
from gateway.calls.service import CallService
from gateway.errors import (
    BadRequest,
    GatewayError,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    error_reply,
)
from gateway.metrics.counters import counters_json
from gateway.metrics.process_stats import process_stats, sibling_stats
from gateway.rtc.ice_servers import IceServers
from gateway.wire.data_channel import ID_PATTERN, is_valid_id

logger = logging.getLogger(__name__)

CALLS_KEY = web.AppKey("calls", CallService)
MAX_BODY_KEY = web.AppKey("max_body_bytes", int)
BODY_TIMEOUT_KEY = web.AppKey("body_timeout_s", float)
#: The STUN/TURN servers handed to callers (Link headers, `/offer` JSON).
ICE_SERVERS_KEY = web.AppKey("ice_servers", IceServers)

SDP_TYPE = "application/sdp"
SDPFRAG_TYPE = "application/trickle-ice-sdpfrag"
WORKER_HEADER = "X-Gateway-Worker"


class OfferRequest(BaseModel):
    """`POST /offer` body."""

    model_config = ConfigDict(extra="ignore")
    sdp: str = Field(min_length=1)
    type: Literal["offer"]
    session_id: str | None = Field(None, pattern=f"^{ID_PATTERN}$")
    user_id: str | None = Field(None, pattern=f"^{ID_PATTERN}$")
    mode: Literal["audio", "text"] = "audio"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Gateway errors become JSON error responses with their status (and Retry-After)."""
    try:
        return await handler(request)
    except GatewayError as exc:
        return error_response(exc)


def error_response(exc: GatewayError) -> web.Response:
    """The HTTP form of `error_reply(exc)`; unexpected server errors are logged."""
    reply = error_reply(exc)
    if reply.unexpected:
        logger.error("request failed: %s", reply.code)
    return web.json_response(
        reply.http_body(), status=reply.http_status, headers=reply.http_headers()
    )


async def read_body(request: web.Request, *, content_type: str) -> str:
    """The request body as text: 415 for another type, 413 past the limit (before
    parsing), 408 when it takes longer than the app's body timeout to arrive."""
    if request.content_type != content_type:
        raise UnsupportedMediaType(f"expected Content-Type {content_type}")
    limit = request.app[MAX_BODY_KEY]
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    timeout_s = request.app[BODY_TIMEOUT_KEY]
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await request.content.read(limit + 1 - len(body)):
                body += chunk
                if len(body) > limit:
                    raise PayloadTooLarge(f"body larger than {limit} bytes")
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {timeout_s:g} s") from None
    except ConnectionError:  # the client went away (or was cut off) mid-body
        raise BadRequest("the connection closed before the body arrived") from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8 text") from None


def _query_id(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and not is_valid_id(value):
        raise BadRequest(f"{name} must match {ID_PATTERN}")
    return value


def _query_mode(request: web.Request) -> Modality:
    try:
        return Modality(request.query.get("mode", "audio"))
    except ValueError:
        raise BadRequest("mode must be audio or text") from None


async def _caller(request: web.Request, *, user_id: str | None) -> Principal:
    """Who is setting up a call: origin and credential checked, set-up rate counted
    (before any body is read)."""
    auth = request.app[EDGE_AUTH_KEY]
    auth.check_origin(request)
    principal = await auth.principal(request, user_id=user_id)
    if auth.limits is not None:
        await auth.limits.admit_setup(request.remote or "unknown", principal)
    return principal


async def post_calls(request: web.Request) -> web.Response:
    """WHIP-shaped: SDP offer in, 201 with the SDP answer and the call's Location."""
    principal = await _caller(request, user_id=_query_id(request, "user_id"))
    session_id = granted_session(principal, _query_id(request, "session_id"))
    modality = _query_mode(request)
    sdp = await read_body(request, content_type=SDP_TYPE)
    answer = await request.app[CALLS_KEY].accept_offer(
        sdp,
        user_id=principal.user_id,
        session_id=session_id,
        modality=modality,
        requester=principal,
        source=request.remote or "",
    )
    location = f"/calls/{answer.call_id}"
    return web.Response(
        status=201,
        text=answer.sdp,
        content_type=SDP_TYPE,
        headers={
            "Location": location,
            "X-Session-Id": answer.session_id,
            WORKER_HEADER: str(answer.pid),
        },
    )


async def post_offer(request: web.Request) -> web.Response:
    """JSON convenience: `{"sdp", "type": "offer"}` in, `{"sdp", "type": "answer", ...}` out."""
    auth = request.app[EDGE_AUTH_KEY]
    auth.check_origin(request)
    await auth.principal(request, user_id=None)  # no credential, no body read
    raw = await read_body(request, content_type="application/json")
    try:
        offer = OfferRequest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(f"{where}: {first['msg']}") from None
    principal = await _caller(request, user_id=offer.user_id)
    answer = await request.app[CALLS_KEY].accept_offer(
        offer.sdp,
        user_id=principal.user_id,
        session_id=granted_session(principal, offer.session_id),
        modality=Modality(offer.mode),
        requester=principal,
        source=request.remote or "",
    )
    return web.json_response(
        {
            "sdp": answer.sdp,
            "type": "answer",
            "call_id": answer.call_id,
            "session_id": answer.session_id,
            "ice_servers": _ice_servers_json(request, principal.user_id),
        },
        headers={WORKER_HEADER: str(answer.pid), "Cache-Control": "no-store"},
    )


async def get_ice_servers(request: web.Request) -> web.Response:
    """The STUN/TURN servers for the caller's next call, TURN credentials minted for
    the authenticated user: a browser configures its `RTCPeerConnection` with them
    before it makes its offer. Origin and credential are checked as for an offer
    (a failed credential counts against the address); no set-up is counted."""
    auth = request.app[EDGE_AUTH_KEY]
    auth.check_origin(request)
    principal = await auth.principal(request, user_id=_query_id(request, "user_id"))
    return web.json_response(
        {"ice_servers": _ice_servers_json(request, principal.user_id)},
        headers={"Cache-Control": "no-store"},  # credentials: never cached or shared
    )


def _ice_servers_json(request: web.Request, user_id: str) -> list[dict[str, str]]:
    """W3C `RTCIceServer` dictionaries for `user_id` (TURN credentials minted now)."""
    return [server.to_json() for server in request.app[ICE_SERVERS_KEY].for_user(user_id)]


async def _call_owner(request: web.Request) -> Principal:
    """Who is acting on an existing call (its owner, or an admin key: checked by the
    call service)."""
    auth = request.app[EDGE_AUTH_KEY]
    auth.check_origin(request)
    return await auth.principal(request, user_id=None)


async def patch_call(request: web.Request) -> web.Response:
    """Trickle ICE: add the caller's candidates (RFC 8840 sdpfrag)."""
    requester = await _call_owner(request)
    sdpfrag = await read_body(request, content_type=SDPFRAG_TYPE)
    await request.app[CALLS_KEY].add_candidates(
        request.match_info["call_id"], sdpfrag, requester=requester
    )
    return web.Response(status=204)


async def delete_call(request: web.Request) -> web.Response:
    requester = await _call_owner(request)
    await request.app[CALLS_KEY].hang_up(request.match_info["call_id"], requester=requester)
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    """`calls` over every worker of the gateway, and how many workers serve."""
    workers = request.app[CALLS_KEY].workers()
    return web.json_response(
        {"status": "ok", "calls": sum(w.calls for w in workers), "workers": len(workers)}
    )


async def stats(request: web.Request) -> web.Response:
    """The answering process's live calls, CPU seconds and resident memory (see
    `gateway.metrics.process_stats`), and the same for every worker under `workers`;
    `agent` and `limits`: the live sessions' stalls and recoveries and the limits'
    refusals, summed over every worker (`gateway.metrics.counters`), each worker's
    own under its entry. An admin endpoint: an API key is required when auth is on."""
    await request.app[EDGE_AUTH_KEY].admin(request)
    calls = request.app[CALLS_KEY]
    workers = calls.workers()
    readings = []
    for worker in workers:
        reading = sibling_stats(worker.pid, worker.calls)
        if reading is not None:
            readings.append({**reading.as_json(), **counters_json(worker.counters)})
    totals = tuple(map(sum, zip(*(w.counters for w in workers), strict=True))) if workers else ()
    return web.json_response(
        {
            **process_stats(calls.live_calls).as_json(),
            **counters_json(totals),
            "workers": readings,
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/calls", post_calls)
    app.router.add_patch("/calls/{call_id}", patch_call)
    app.router.add_delete("/calls/{call_id}", delete_call)
    app.router.add_post("/offer", post_offer)
    app.router.add_get("/ice-servers", get_ice_servers)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats", stats)
