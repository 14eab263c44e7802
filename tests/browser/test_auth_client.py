"""Authentication from the browser: the served client in real headless Chromium.

Pins down:
- the client asks `/client-config` how to authenticate, gets a call token from the
  app's token endpoint, and calls with it over WebRTC (Bearer on WHIP) and over the
  WebSocket fallback (the `bearer.<token>` subprotocol): the gateway's agent session
  belongs to the token's user, whatever user the page would have named;
- a token endpoint that refuses gives a clear notice and no call;
- the ownership rule: the same page, now signed in as another user, cannot continue
  the first user's conversation (the gateway answers 404 as for an unknown one) and
  the client starts a new conversation, saying so;
- the Origin check: a page on another origin gets nothing from the gateway (no
  WebSocket, no readable answer) unless its origin is in `--allowed-origins`, and
  then a CORS call works end to end (preflight, 201, `Location` readable, DELETE).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from google.adk.agents import Agent
from google.adk.sessions import InMemorySessionService

import gateway.models.scripted  # noqa: F401  (registers scripted-live)
from gateway.agent_bridge import AdkAgentConnector
from gateway.auth.credentials import mint_token
from tests.browser import cdp
from tests.browser.conftest import GatewayStarter
from tests.support.fakes import FakeAgentConnector

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

SECRET = "browser-test-secret-0123456789abcdef-0123456789"
CONNECTION = "document.getElementById('connection-state').dataset.state"
NOTICE = (
    "(document.getElementById('notice').hidden ? ''"
    " : document.getElementById('notice-text').textContent)"
)
SYSTEM_SAID = "[...document.querySelectorAll('.msg.system .body')].map(e => e.textContent)"


class TokenEndpoint:
    """The app's side: who is signed in, and `POST /app/token` minting their token
    (or refusing, as an app does for a visitor who is not signed in)."""

    def __init__(self) -> None:
        self.user: str | None = "alice"
        self.requests = 0

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/app/token", self.handle)

    async def handle(self, _: web.Request) -> web.Response:
        self.requests += 1
        if self.user is None:
            return web.json_response({"error": "sign in first"}, status=401)
        return web.json_response(
            {"token": mint_token(SECRET, self.user, session_id=None, ttl_s=300)}
        )


def secured(endpoint: TokenEndpoint, **overrides: Any) -> dict[str, Any]:
    routes: Callable[[web.Application], None] = endpoint.add_to
    return {"jwt_secret": SECRET, "client_token_url": "/app/token", "routes": routes, **overrides}


def scripted_connector() -> AdkAgentConnector:
    """A real ADK runner and session service (sessions are kept per user)."""
    agent = Agent(name="browser_auth", model="scripted-live", instruction="Be brief.")
    return AdkAgentConnector(agent, InMemorySessionService(), app_name="browser-auth")


async def call_and_wait(page: cdp.Page, url: str) -> None:
    await page.goto(url)
    await page.wait_for(f"{CONNECTION} === 'idle'")
    await page.click("#call-button")
    await page.wait_for(f"{CONNECTION} === 'connected'", timeout_s=20)


@pytest.mark.parametrize("transport", ["webrtc", "ws"])
async def test_the_client_calls_with_a_token_from_the_apps_endpoint(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page, transport: str
) -> None:
    endpoint, connector = TokenEndpoint(), FakeAgentConnector()
    base = await start_gateway(connector, **secured(endpoint))
    await call_and_wait(page, f"{base}/?transport={transport}")
    assert await page.evaluate("window.gatewayClient.call.transport") == (
        "websocket" if transport == "ws" else "webrtc"
    )
    assert endpoint.requests == 1
    assert [s.user_id for s in connector.sessions] == ["alice"]  # the token's user
    assert await page.evaluate(NOTICE) == ""
    await page.click("#call-button")  # hang up
    await page.wait_for(f"{CONNECTION} === 'idle'")
    assert browser.page_errors == []


async def test_a_refusing_token_endpoint_is_explained(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    endpoint, connector = TokenEndpoint(), FakeAgentConnector()
    endpoint.user = None
    base = await start_gateway(connector, **secured(endpoint))
    await page.goto(f"{base}/")
    await page.wait_for(f"{CONNECTION} === 'idle'")
    await page.click("#call-button")
    notice = await page.wait_for(NOTICE, timeout_s=10)
    assert "token endpoint answered 401" in notice
    assert await page.evaluate(CONNECTION) == "idle"
    assert connector.sessions == []


async def test_another_user_cannot_continue_the_conversation(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    endpoint, connector = TokenEndpoint(), scripted_connector()
    base = await start_gateway(connector, **secured(endpoint))
    await call_and_wait(page, f"{base}/")
    alice_session = await page.wait_for("window.gatewayClient.call.sessionId", timeout_s=10)
    await page.click("#call-button")  # hang up; the page keeps the conversation's id
    await page.wait_for(f"{CONNECTION} === 'idle'")

    endpoint.user = "bob"  # someone else signs in on this page
    await page.click("#call-button")
    await page.wait_for(f"{CONNECTION} === 'connected'", timeout_s=20)
    said = await page.wait_for(f"{SYSTEM_SAID}.length && {SYSTEM_SAID}", timeout_s=10)
    assert any("no longer available" in text for text in said)
    bob_session = await page.wait_for(
        f"window.gatewayClient.call.sessionId !== {json.dumps(alice_session)}"
        " && window.gatewayClient.call.sessionId",
        timeout_s=10,
    )
    service = connector.session_service
    assert await service.get_session(app_name="browser-auth", user_id="bob", session_id=bob_session)
    assert not await service.get_session(
        app_name="browser-auth", user_id="bob", session_id=alice_session
    )
    await page.click("#call-button")


#: From a page on another origin: open a WebSocket to the gateway with a valid token;
#: and make a WHIP call with it by fetch (a CORS request, preflighted).
FOREIGN_WEBSOCKET = """(async ({url, token}) => new Promise((resolve) => {
  const ws = new WebSocket(url, ['bearer', 'bearer.' + token]);
  ws.onopen = () => { ws.close(); resolve('open'); };
  ws.onclose = () => resolve('refused'); }))"""
FOREIGN_WHIP = """(async ({url, token}) => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('audio', {direction: 'sendrecv'});
  pc.createDataChannel('events');
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => { if (pc.iceGatheringState === 'complete') r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); });
  const auth = {Authorization: 'Bearer ' + token};
  let response;
  try {
    response = await fetch(url + '/calls', {method: 'POST', body: pc.localDescription.sdp,
      headers: {...auth, 'Content-Type': 'application/sdp'}});
  } catch (error) { pc.close(); return {blocked: String(error)}; }
  const location = response.headers.get('Location');
  let deleted = null;
  if (location) deleted = (await fetch(new URL(location, url), {method: 'DELETE',
      headers: auth})).status;
  pc.close();
  return {status: response.status, location, deleted};
})"""


@pytest.fixture
async def foreign_origin() -> AsyncIterator[str]:
    """A blank page served from another origin (another port on loopback)."""
    app = web.Application()

    async def blank(_: web.Request) -> web.Response:
        return web.Response(
            text="<!doctype html><title>elsewhere</title>", content_type="text/html"
        )

    app.router.add_get("/", blank)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


async def run_in_page(page: cdp.Page, script: str, **args: str) -> Any:
    return await page.evaluate(f"({script})({json.dumps(args)})")


async def test_other_origins_are_refused_unless_allowed(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page, foreign_origin: str
) -> None:
    token = mint_token(SECRET, "alice", session_id=None, ttl_s=300)
    connector = FakeAgentConnector()
    closed = await start_gateway(connector, jwt_secret=SECRET)
    await page.goto(f"{foreign_origin}/")
    ws_url = closed.replace("http", "ws") + "/ws/alice"
    assert await run_in_page(page, FOREIGN_WEBSOCKET, url=ws_url, token=token) == "refused"
    whip = await run_in_page(page, FOREIGN_WHIP, url=closed, token=token)
    assert "blocked" in whip, whip  # no CORS headers: the page learns nothing
    await asyncio.sleep(0.2)
    assert connector.sessions == []  # and the gateway started nothing either

    opened = await start_gateway(connector, jwt_secret=SECRET, allowed_origins=foreign_origin)
    ws_url = opened.replace("http", "ws") + "/ws/alice"
    assert await run_in_page(page, FOREIGN_WEBSOCKET, url=ws_url, token=token) == "open"
    whip = await run_in_page(page, FOREIGN_WHIP, url=opened, token=token)
    assert whip["status"] == 201, whip
    assert whip["location"].startswith("/calls/")  # exposed to the page by CORS
    assert whip["deleted"] == 204
    assert browser.page_errors == []
