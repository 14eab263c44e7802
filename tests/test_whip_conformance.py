"""WHIP (RFC 9725) conformance of `/calls`, on the wire: raw HTTP requests against
the real app on a real server (aiohttp's TestServer), real aiortc callers.

Pins down, one test per rule (the RFC's section in each test's docstring):
- the 201 carries `Content-Type: application/sdp` exactly (no charset);
- the 201 carries a strong, quoted `ETag` naming the call's ICE session; a trickle
  `PATCH` without `If-Match` is 428, with another session's tag (or a weak one) 412,
  with the right one (or `*`) 204 without an `ETag`;
- an ICE restart `PATCH` (new ufrag/pwd, `If-Match: *`) is 422: the call goes on, and
  the problem's detail says how to move the call, which works (`POST /calls` with the
  first answer's `X-Session-Id` continues the conversation and ends the old call);
- `OPTIONS /calls` is 200 with `Accept-Post: application/sdp` (and the caller's ICE
  servers), `OPTIONS /calls/{id}` with `Accept-Patch`; with `--allowed-origins` a CORS
  preflight still gets its CORS headers (and `Accept-Post`, no ICE servers);
- the 201 has one `Link: rel="ice-server"` per STUN/TURN server, TURN credentials
  minted for the caller's user, exposed to cross-origin pages;
- the 201 advertises our extension with a `Link` whose rel is our own URN;
- every error is an RFC 9457 `application/problem+json` with type/title/status/
  detail, our `code` and the legacy `error` object: the router's 404 and 405, 413,
  415 (with `Accept-Post`/`Accept-Patch`), 408, a WebSocket endpoint's 400, a bug's
  500 (opaque), and 429 and 503 with their `Retry-After`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway import signaling
from gateway.app import create_app
from gateway.config import load_settings
from gateway.rtc.ice_servers import IceServers
from tests.support.fakes import FakeAgentConnector
from tests.support.peers import HeadlessCaller, live_call

SDP = {"Content-Type": "application/sdp"}
SDPFRAG = {"Content-Type": "application/trickle-ice-sdpfrag"}
CANDIDATE = "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
EXTENSION_REL = "urn:x-adk-webrtc-gateway:whip:ext:agent-call:1"
ORIGIN = "https://app.example"
TURN_SECRET = "t" * 32
NOW = 1_900_000_000.0

Client = TestClient[Any, Any]


async def post_offer(client: Client, caller: HeadlessCaller, query: str = "") -> Any:
    """`POST /calls{query}` with the caller's offer; the answer applied on 201."""
    response = await client.post(f"/calls{query}", data=await caller.offer(), headers=SDP)
    if response.status == 201:
        await caller.accept(await response.text())
    return response


async def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem of `status` and our `code`; its body."""
    assert response.status == status, await response.text()
    assert response.headers["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = json.loads(await response.text())
    assert body["type"] == f"urn:x-adk-webrtc-gateway:error:{code}"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["code"] == code
    assert body["error"] == {"code": code, "message": body["detail"]}
    return body


def links(response: Any) -> list[str]:
    return list(response.headers.getall("Link", []))


async def test_the_answer_is_exactly_application_sdp(start_gateway: Callable[..., Any]) -> None:
    """§4.2: `201 Created` with a content type of `application/sdp`."""
    client: Client = await start_gateway(FakeAgentConnector())
    caller = HeadlessCaller()
    try:
        response = await post_offer(client, caller)
        assert response.status == 201
        assert response.headers["Content-Type"] == "application/sdp"
        assert (await response.text()).startswith("v=0\r\n")
        assert (await client.delete(response.headers["Location"])).status == 204
    finally:
        await caller.close()


async def test_trickle_needs_the_etag_of_the_ice_session(
    start_gateway: Callable[..., Any],
) -> None:
    """§4.3.1: a strong ETag on the 201; §4.3.2: If-Match required (428), compared
    strongly (412), 204 without an ETag when it matches."""
    client: Client = await start_gateway(FakeAgentConnector())
    async with live_call(client) as (caller, location), live_call(client) as (other, _):
        etag = caller.etag
        assert etag is not None
        assert re.fullmatch(r'"[A-Za-z0-9_-]{16}"', etag), etag
        assert other.etag != etag  # one per ICE session
        patch = client.patch
        await problem(
            await patch(location, data=CANDIDATE, headers=SDPFRAG), 428, "precondition_required"
        )
        for stale in (other.etag, f"W/{etag}", '"xyzzy", W/"other"'):
            response = await patch(
                location, data=CANDIDATE, headers={**SDPFRAG, "If-Match": stale or ""}
            )
            await problem(response, 412, "precondition_failed")
        for matching in (etag, f'"xyzzy", {etag}', "*"):
            response = await patch(
                location, data=CANDIDATE, headers={**SDPFRAG, "If-Match": matching}
            )
            assert response.status == 204, await response.text()
            assert "ETag" not in response.headers
            assert await response.read() == b""
        # RFC 9110 §13.2.1: no precondition is judged for a call that is not there.
        gone = await patch("/calls/nope", data=CANDIDATE, headers={**SDPFRAG, "If-Match": etag})
        await problem(gone, 404, "unknown_call")


async def test_an_ice_restart_is_refused_and_the_call_can_move(
    start_gateway: Callable[..., Any],
) -> None:
    """§4.3.1: a session that trickles but cannot restart ICE answers 422; §4.3.3: the
    call and its ICE session go on. The detail's way out works: a new offer with the
    first answer's `X-Session-Id` continues the conversation and ends the old call."""
    connector = FakeAgentConnector()
    client: Client = await start_gateway(connector)
    first, second = HeadlessCaller(), HeadlessCaller()
    try:
        answered = await post_offer(client, first)
        assert answered.status == 201
        location, session_id = answered.headers["Location"], answered.headers["X-Session-Id"]
        await first.wait_connected()
        await first.wait_message(type="session")
        restart = (
            "a=ice-ufrag:newU\r\na=ice-pwd:aNewPasswordOf24Chars00\r\n"
            f"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n{CANDIDATE}"
        )
        refused = await client.patch(location, data=restart, headers={**SDPFRAG, "If-Match": "*"})
        body = await problem(refused, 422, "ice_restart_unsupported")
        assert "POST /calls" in body["detail"]
        assert "?session_id=" in body["detail"]
        assert "X-Session-Id" in body["detail"]
        await asyncio.sleep(0.5)
        assert first.pc.connectionState == "connected"  # the call went on

        moved = await post_offer(client, second, f"?session_id={session_id}")
        assert moved.status == 201, await moved.text()
        assert moved.headers["X-Session-Id"] == session_id
        await first.wait_message(type="error", code="moved")
        for _ in range(50):  # the old call ends in the background
            if (await client.delete(location)).status == 404:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the moved call did not end")
        assert [s.session_id for s in connector.sessions] == [session_id, session_id]
        assert (await client.delete(moved.headers["Location"])).status == 204
    finally:
        await first.close()
        await second.close()


async def test_options_advertises_what_the_resources_take(
    start_gateway: Callable[..., Any],
) -> None:
    """§4.2: `OPTIONS` is answered, its 200 with `Accept-Post: application/sdp`;
    §4.6: the ICE servers may come with it; RFC 5789 §3.1: `Accept-Patch` on a call."""
    client: Client = await start_gateway(FakeAgentConnector(), ice_servers="stun:192.0.2.7:3478")
    endpoint = await client.options("/calls?user_id=alice")
    assert endpoint.status == 200
    assert endpoint.headers["Accept-Post"] == "application/sdp"
    assert {m.strip() for m in endpoint.headers["Allow"].split(",")} == {"OPTIONS", "POST"}
    assert links(endpoint) == ['<stun:192.0.2.7:3478>; rel="ice-server"']
    # A preflight (no CORS here: the browser will refuse) never gets ICE servers.
    preflight = await client.options(
        "/calls", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.headers["Accept-Post"] == "application/sdp"
    assert links(preflight) == []
    assert "Access-Control-Allow-Origin" not in preflight.headers
    session = await client.options("/calls/AAAAAAAAAAAAAAAAAAAAAAAA")
    assert session.status == 200
    assert session.headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"
    assert {m.strip() for m in session.headers["Allow"].split(",")} == {
        "OPTIONS",
        "PATCH",
        "DELETE",
    }


async def test_a_cors_preflight_keeps_its_cors_headers(
    start_gateway: Callable[..., Any],
) -> None:
    """§4.2: OPTIONS for CORS (aiohttp-cors answers the preflight), `Accept-Post` on
    it too; §4.6: no ICE servers on a preflight. A plain OPTIONS is still ours."""
    client: Client = await start_gateway(
        FakeAgentConnector(), allowed_origins=ORIGIN, ice_servers="stun:192.0.2.7:3478"
    )
    preflight = await client.options(
        "/calls",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )
    assert preflight.status == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Accept-Post"] == "application/sdp"
    assert links(preflight) == []
    patch_preflight = await client.options(
        "/calls/AAAAAAAAAAAAAAAAAAAAAAAA",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "content-type, if-match",
        },
    )
    assert patch_preflight.status == 200
    assert patch_preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert patch_preflight.headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"
    plain = await client.options("/calls")
    assert plain.status == 200
    assert plain.headers["Accept-Post"] == "application/sdp"
    refused = await client.options(
        "/calls",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    await problem(refused, 403, "forbidden")
    assert "Access-Control-Allow-Origin" not in refused.headers


async def test_the_answer_links_the_callers_ice_servers() -> None:
    """§4.6: one `Link: rel="ice-server"` per server, TURN credentials as `username`,
    `credential`, `credential-type`, minted for the call's user; readable cross-origin."""
    settings = load_settings({"ice_addresses": "127.0.0.1", "allowed_origins": ORIGIN}, environ={})
    app = create_app(settings, FakeAgentConnector())
    # What callers are handed (`ICE_SERVERS_KEY`); the gateway's own peer connections
    # keep none, so nothing here tries to reach a relay.
    app[signaling.ICE_SERVERS_KEY] = IceServers(
        ["stun:192.0.2.7:3478"],
        turn_urls=["turn:192.0.2.7:3478?transport=udp"],
        turn_secret=TURN_SECRET,
        turn_ttl_s=600,
        clock=lambda: NOW,
    )
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    callers = {"alice": HeadlessCaller(), "bob": HeadlessCaller()}
    try:
        for user, caller in callers.items():
            response = await client.post(
                f"/calls?user_id={user}",
                data=await caller.offer(),
                headers={**SDP, "Origin": ORIGIN},
            )
            assert response.status == 201
            assert "Link" in response.headers["Access-Control-Expose-Headers"].split(",")
            username = f"{int(NOW + 600)}:{user}"
            password = base64.b64encode(
                hmac.new(TURN_SECRET.encode(), username.encode(), hashlib.sha1).digest()
            ).decode()
            ice = [link for link in links(response) if 'rel="ice-server"' in link]
            assert ice == [
                '<stun:192.0.2.7:3478>; rel="ice-server"',
                f'<turn:192.0.2.7:3478?transport=udp>; rel="ice-server"; username="{username}"'
                f'; credential="{password}"; credential-type="password"',
            ]
            assert (await client.delete(response.headers["Location"])).status == 204
    finally:
        for caller in callers.values():
            await caller.close()
        await client.close()


async def test_the_answer_advertises_our_extension(start_gateway: Callable[..., Any]) -> None:
    """§4.9: one `Link` per extension, its rel the extension's URN, its target the
    resource for it: here the call itself (its data channel speaks our protocol)."""
    client: Client = await start_gateway(FakeAgentConnector())
    caller = HeadlessCaller()
    try:
        response = await post_offer(client, caller)
        assert response.status == 201
        location = response.headers["Location"]
        assert links(response) == [f'<{location}>; rel="{EXTENSION_REL}"']
        assert not EXTENSION_REL.startswith("urn:ietf:")
        assert (await client.delete(location)).status == 204
    finally:
        await caller.close()


async def test_every_error_is_a_problem(start_gateway: Callable[..., Any]) -> None:
    """RFC 9457 for every error: the router's own, the edge's, a WebSocket endpoint's;
    415s name the accepted type (§4.2 Accept-Post, RFC 5789 §2.2 Accept-Patch)."""
    client: Client = await start_gateway(
        FakeAgentConnector(), max_offer_bytes=4096, body_timeout_s=0.5
    )
    not_allowed = await client.get("/calls")
    await problem(not_allowed, 405, "method_not_allowed")
    assert not_allowed.headers["Allow"] == "OPTIONS, POST"
    put = await client.put("/calls/AAAAAAAAAAAAAAAAAAAAAAAA")
    await problem(put, 405, "method_not_allowed")
    assert put.headers["Allow"] == "OPTIONS, PATCH, DELETE"
    await problem(await client.get("/no/such/thing"), 404, "not_found")
    wrong = await client.post("/calls", data="v=0", headers={"Content-Type": "text/plain"})
    await problem(wrong, 415, "unsupported_media_type")
    assert wrong.headers["Accept-Post"] == "application/sdp"
    wrong_patch = await client.patch(
        "/calls/AAAAAAAAAAAAAAAAAAAAAAAA", data=CANDIDATE, headers={"Content-Type": "text/plain"}
    )
    await problem(wrong_patch, 415, "unsupported_media_type")
    assert wrong_patch.headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"
    await problem(
        await client.post("/calls", data="v" * 5000, headers=SDP), 413, "payload_too_large"
    )
    await problem(await client.post("/calls", data="not sdp at all", headers=SDP), 400, "no_audio")
    await problem(await client.get("/ws/not%20an%20id?is_audio=true"), 400, "bad_request")

    async with aiohttp.ClientSession() as http:  # a body that never comes: 408
        url = client.make_url("/calls")
        async with http.post(url, data=_never_ending(), headers=SDP) as slow:
            await problem(slow, 408, "request_timeout")


async def test_a_bug_is_an_opaque_problem() -> None:
    """A handler's bug is a 500 problem `internal`, its text never shown."""

    async def broken(_: web.Request) -> web.Response:
        raise KeyError("secret detail")

    app = web.Application(middlewares=signaling.MIDDLEWARES)
    app.router.add_get("/broken", broken)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/broken")
        body = await problem(response, 500, "internal")
        assert body["detail"] == "internal error"
        assert "secret" not in await response.text()


async def _never_ending() -> Any:
    yield b"v=0\r\n"
    await asyncio.sleep(30)
    yield b""


async def test_refusals_keep_retry_after(start_gateway: Callable[..., Any]) -> None:
    """§4.5: a 503 may say when to retry; so does our 429 (too many still connecting)."""
    client: Client = await start_gateway(
        FakeAgentConnector(), max_calls=2, max_pending_calls_per_source=1
    )
    pending, second, third = HeadlessCaller(), HeadlessCaller(), HeadlessCaller()
    try:
        offer = await pending.offer()  # never applies the answer: stays connecting
        first = await client.post("/calls", data=offer, headers=SDP)
        assert first.status == 201
        limited = await client.post("/calls", data=await second.offer(), headers=SDP)
        await problem(limited, 429, "too_many_pending")
        assert int(limited.headers["Retry-After"]) > 0
        assert (await client.delete(first.headers["Location"])).status == 204
        async with live_call(client), live_call(client):
            full = await client.post("/calls", data=await third.offer(), headers=SDP)
            await problem(full, 503, "at_capacity")
            assert int(full.headers["Retry-After"]) > 0
    finally:
        for caller in (pending, second, third):
            await caller.close()
