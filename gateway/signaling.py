"""HTTP signaling (aiohttp): WHIP (RFC 9725) `/calls`, JSON `/offer`, `/ice-servers`,
`/healthz`, `/stats`.

Speaks HTTP and strings: SDP in, SDP out. Client mistakes become 4xx here, in one
place (`error_middleware`), every error an RFC 9457 problem (the router's own 404
and 405 included); nothing below this module knows about HTTP. `/calls` follows
RFC 9725: `201` with exactly `application/sdp`, an `ETag` naming the call's ICE
session, `Link` headers for the caller's STUN/TURN servers (§4.6) and our extension
(§4.9); trickle `PATCH` needs `If-Match` (§4.3.2); an ICE restart gets `422`
(§4.3.1: we trickle but cannot restart); `OPTIONS` advertises `Accept-Post` /
`Accept-Patch` beside aiohttp-cors's preflights (`options_middleware`). Whether the
gateway is one process or several is behind the `CallService`; answers name the
process that owns the call (`X-Gateway-Worker: <pid>`). Never imports aiortc or ADK
(`rtc/ice_servers.py` is plain data).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Literal

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.agent_api import Modality
from gateway.auth.http import EDGE_AUTH_KEY, granted_session
from gateway.auth.principal import Principal
from gateway.calls.service import CallService
from gateway.errors import (
    PROBLEM_JSON_TYPE,
    URN_BASE,
    BadRequest,
    GatewayError,
    IceRestartUnsupported,
    PayloadTooLarge,
    PreconditionRequired,
    RequestTimeout,
    UnsupportedMediaType,
    error_reply,
    status_title,
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
#: RFC 9725 §4.9: our extension to WHIP, advertised on every 201 (a `Link` to the
#: call): the call is bidirectional (the agent speaks back on the audio track) and
#: its data channel speaks docs/protocol.md's messages, version 1. Why this URN, not
#: `urn:ietf:params:whip:ext:...`: see `errors.URN_BASE`.
AGENT_CALL_EXTENSION = f"{URN_BASE}:whip:ext:agent-call:1"
#: What a caller does instead of an ICE restart (docs/protocol.md, "Moving a call
#: instead of an ICE restart"); RFC 9725 §4.3.3: a refused restart keeps the call.
ICE_RESTART_DETAIL = (
    "this gateway cannot restart ICE; the call and its ICE session go on unchanged."
    " To move the call (say after a network change), POST /calls a new offer with"
    " ?session_id=<the X-Session-Id of this call's 201 answer>: the new call continues"
    " the same conversation and this one ends."
)
#: What each WHIP resource takes (RFC 9725 §4.2: other methods get 405), and what
#: it advertises on OPTIONS: `Accept-Post` (§4.2, W3C LDP §7.1), `Accept-Patch`
#: (RFC 5789 §3.1).
_ENDPOINT_ADVERTISED = {hdrs.ALLOW: "OPTIONS, POST", "Accept-Post": SDP_TYPE}
_SESSION_ADVERTISED = {hdrs.ALLOW: "OPTIONS, PATCH, DELETE", "Accept-Patch": SDPFRAG_TYPE}


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
    """Every error becomes an RFC 9457 problem with its status (and Retry-After):
    gateway errors, aiohttp's own (the router's 404 and 405, aiohttp-cors's 403)
    and, opaquely, bugs. On a WHIP resource a 415 names the type it takes and a 405
    the methods (`OPTIONS` included)."""
    try:
        return await handler(request)
    except GatewayError as exc:
        return error_response(exc, headers=_advertised_on_error(request, exc.http_status))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k not in _BODY_HEADERS}
        headers.update(_advertised_on_error(request, exc.status))
        return error_response(_from_aiohttp(request, exc), headers=headers)
    except Exception as exc:  # boundary: a bug is a 500, logged once, never its text
        logger.exception("request failed")
        return error_response(exc)


@web.middleware
async def options_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """`OPTIONS` on the WHIP resources: `200` with `Allow` and `Accept-Post` (the
    endpoint, RFC 9725 §4.2) or `Accept-Patch` (a call, RFC 5789 §3.1). A CORS
    preflight (`Origin` and `Access-Control-Request-Method`) on a route aiohttp-cors
    serves (`--allowed-origins`) is its answer with these added; no ICE servers on
    a preflight (§4.6: minting TURN credentials for every preflight costs latency
    and work, and a preflight carries no credential to mint them for)."""
    advertised = _advertised(request.path)
    if request.method != hdrs.METH_OPTIONS or advertised is None:
        return await handler(request)
    preflight = hdrs.ORIGIN in request.headers and (
        hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
    )
    if preflight and request.match_info.http_exception is None:
        response = await handler(request)
        response.headers.update(advertised)
        return response
    headers = CIMultiDict(advertised)
    # §4.6 allows the servers here for clients that cannot take them after their
    # offer; only for a caller we know (TURN credentials are minted per user).
    wants_servers = request.path == "/calls" and not preflight
    principal = await _options_caller(request) if wants_servers else None
    if principal is not None:
        for server in request.app[ICE_SERVERS_KEY].for_user(principal.user_id):
            headers.add(hdrs.LINK, server.link_header())
    return web.Response(status=200, headers=headers)


async def _options_caller(request: web.Request) -> Principal | None:
    """Who sent a plain `OPTIONS /calls`, as `POST /calls` would see it; None without
    a valid credential (an `OPTIONS` is answered either way)."""
    auth = request.app[EDGE_AUTH_KEY]
    if auth.authenticator is not None and hdrs.AUTHORIZATION not in request.headers:
        return None
    try:
        return await auth.principal(request, user_id=_query_id(request, "user_id"))
    except GatewayError:
        return None


#: The app's middlewares, outermost first.
MIDDLEWARES: tuple[Middleware, ...] = (error_middleware, options_middleware)
_BODY_HEADERS = frozenset({hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH})


def error_response(exc: BaseException, *, headers: Mapping[str, str] = {}) -> web.Response:
    """The HTTP form of `error_reply(exc)`: `application/problem+json` (RFC 9457 §3,
    exactly: no charset parameter), its status and Retry-After; unexpected gateway
    errors are logged (a bug is logged, with its traceback, where it was caught)."""
    reply = error_reply(exc)
    if reply.unexpected and isinstance(exc, GatewayError):
        logger.error("request failed: %s", reply.code)
    return web.Response(
        status=reply.http_status,
        body=json.dumps(reply.http_body()).encode(),
        headers={**headers, **reply.http_headers(), hdrs.CONTENT_TYPE: PROBLEM_JSON_TYPE},
    )


def _from_aiohttp(request: web.Request, exc: web.HTTPException) -> GatewayError:
    """aiohttp's error as the gateway error of that status (`not_found`,
    `method_not_allowed`, `forbidden`, ...)."""
    code = _AIOHTTP_CODES.get(exc.status) or status_title(exc.status).lower().replace(" ", "_")
    if exc.status == 404:
        message = "nothing is served at this path"
    elif exc.status == 405:
        message = f"{request.method} is not allowed here"
    elif exc.text and not exc.text.startswith(f"{exc.status}:"):
        message = exc.text  # aiohttp-cors says why a preflight failed
    else:
        message = status_title(exc.status)
    return GatewayError.from_wire(code, message, http_status=exc.status)


_AIOHTTP_CODES = {413: "payload_too_large", 408: "request_timeout", 415: "unsupported_media_type"}


def _advertised(path: str) -> dict[str, str] | None:
    """What the WHIP resource at `path` takes, or None for any other path."""
    if path == "/calls":
        return _ENDPOINT_ADVERTISED
    if path.startswith("/calls/") and "/" not in path[len("/calls/") :]:
        return _SESSION_ADVERTISED
    return None


def _advertised_on_error(request: web.Request, status: int) -> dict[str, str]:
    """On a WHIP resource: a 415 names the type it takes (`Accept-Post`, RFC 9725
    §4.2; `Accept-Patch`, RFC 5789 §2.2), a 405 the methods (RFC 9110 §15.5.6)."""
    advertised = _advertised(request.path) or {}
    if status == 415:
        return {k: v for k, v in advertised.items() if k != hdrs.ALLOW}
    if status == 405:
        return {k: v for k, v in advertised.items() if k == hdrs.ALLOW}
    return {}


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
    headers = CIMultiDict(
        {
            # RFC 9725 §4.2: exactly this type (aiohttp's `text=` would add a charset).
            hdrs.CONTENT_TYPE: SDP_TYPE,
            hdrs.LOCATION: location,
            # §4.3.1: a strong entity-tag naming the ICE session, for `If-Match`.
            hdrs.ETAG: f'"{answer.ice_tag}"',
            "X-Session-Id": answer.session_id,
            WORKER_HEADER: str(answer.pid),
        }
    )
    # §4.6: the caller's STUN/TURN servers, TURN credentials minted for this call.
    for server in request.app[ICE_SERVERS_KEY].for_user(principal.user_id):
        headers.add(hdrs.LINK, server.link_header())
    headers.add(hdrs.LINK, f'<{location}>; rel="{AGENT_CALL_EXTENSION}"')  # §4.9
    return web.Response(status=201, body=answer.sdp.encode(), headers=headers)


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
    """Trickle ICE: add the caller's candidates (RFC 8840 sdpfrag). RFC 9725 §4.3.2:
    `If-Match` is required (428 without; 412 when it names another ICE session);
    `204` without an `ETag`. An ICE restart (new ufrag/pwd, `If-Match: *` by §4.3.3)
    gets 422 (§4.3.1) and says how to move the call instead."""
    requester = await _call_owner(request)
    sdpfrag = await read_body(request, content_type=SDPFRAG_TYPE)
    if_match = request.if_match
    if if_match is None:
        raise PreconditionRequired("a trickle PATCH needs If-Match with the call's ETag")
    # RFC 9110 §13.1.1: If-Match uses the strong comparison: weak tags never match.
    ice_tags = frozenset(tag.value for tag in if_match if not tag.is_weak)
    try:
        await request.app[CALLS_KEY].add_candidates(
            request.match_info["call_id"], sdpfrag, requester=requester, ice_tags=ice_tags
        )
    except IceRestartUnsupported:
        raise IceRestartUnsupported(ICE_RESTART_DETAIL) from None
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
