"""Who may do what: credentials, owned calls and conversations, origins, limits on use.

A real gateway (in process, over loopback) with real aiortc callers; conversations in
ADK's session service behind the `scripted-live` model, so ownership is ADK's.

Pins down:
- without any auth setting only loopback is served: another address refuses to start,
  saying how to configure auth (`--no-auth` is the explicit opt-out);
- `python -m gateway token` prints a token the gateway accepts;
- no credential, a bad one, an expired one: 401 with `WWW-Authenticate: Bearer` and a
  JSON error; a valid token or API key: the call is set up for the token's user;
- a call can be trickled to and hung up only by its owner (any of the user's tokens)
  or an API key: another user gets 403;
- the user comes from the token: naming another is 403; a token bound to a
  conversation (`sid`) grants only that one; another user's conversation is 404,
  as if it did not exist;
- `/stats` needs an admin (API) key;
- the WebSocket takes the token as a subprotocol or query parameter, checks the path
  user and the page's origin, before upgrading;
- failed logins, set-ups per minute and calls per user are limited (429 with
  Retry-After); calls and WebSocket sessions share one budget (503);
- a call ends at its maximum length, and when its caller goes silent (no media);
- typed turns beyond the per-call rate get an `error` and do not reach the agent.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import WSServerHandshakeError
from aiohttp.test_utils import TestClient
from google.adk.agents import Agent
from google.adk.sessions import InMemorySessionService

import gateway.models.scripted  # noqa: F401  (registers scripted-live)
from gateway.agent_bridge import AdkAgentConnector
from gateway.auth.credentials import mint_token
from gateway.config import ConfigError, load_settings
from gateway.metrics.counters import COUNTERS
from tests.support import REPO_ROOT
from tests.support.fakes import FakeAgentConnector
from tests.support.peers import HeadlessCaller, tone_pcm

SECRET = "s" * 40
API_KEY = "k" * 24
SDP = "application/sdp"


def token(user: str, *, session: str | None = None, ttl_s: float = 60) -> str:
    return mint_token(SECRET, user, session_id=session, ttl_s=ttl_s)


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@pytest.fixture(autouse=True)
def fresh_counters() -> None:
    """The counters are one tally per process: earlier tests' refusals are not ours."""
    COUNTERS.reset()


@pytest.fixture
async def adk_connector() -> AsyncIterator[AdkAgentConnector]:
    agent = Agent(name="auth_agent", model="scripted-live", instruction="Be brief.")
    connector = AdkAgentConnector(agent, InMemorySessionService(), app_name="auth")
    yield connector
    await connector.close()


@pytest.fixture
async def secured(
    start_gateway: Callable[..., Any], adk_connector: AdkAgentConnector
) -> Callable[..., Any]:
    async def start(**overrides: Any) -> TestClient[Any, Any]:
        settings = {"jwt_secret": SECRET, "api_keys": API_KEY, **overrides}
        client: TestClient[Any, Any] = await start_gateway(adk_connector, **settings)
        return client

    return start


async def dial(
    client: TestClient[Any, Any], caller: HeadlessCaller, credential: str | None, query: str = ""
) -> aiohttp.ClientResponse:
    headers = {"Content-Type": SDP, **(bearer(credential) if credential else {})}
    response = await client.post(f"/calls{query}", data=await caller.offer(), headers=headers)
    if response.status == 201:
        await caller.accept(await response.text())
    return response


def test_only_loopback_is_served_without_auth() -> None:
    with pytest.raises(ConfigError, match=r"refusing to serve 0\.0\.0\.0 without authentication"):
        load_settings({"host": "0.0.0.0"}, environ={})
    assert load_settings({"host": "0.0.0.0", "no_auth": True}, environ={}).no_auth
    assert load_settings({"host": "0.0.0.0", "jwt_secret": SECRET}, environ={}).authenticated
    assert not load_settings({"host": "::1"}, environ={}).authenticated
    with pytest.raises(ConfigError, match="at least 32 characters"):
        load_settings({"jwt_secret": "short"}, environ={})
    started = subprocess.run(
        [sys.executable, "-m", "gateway", "--host", "0.0.0.0", "--port", "0"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
    )  # fmt: skip
    assert started.returncode != 0
    assert "--api-keys, --jwt-secret or --jwt-public-key" in started.stderr
    assert "--no-auth" in started.stderr


def test_the_token_command_mints_what_the_gateway_accepts() -> None:
    minted = subprocess.run(
        [sys.executable, "-m", "gateway", "token", "--user", "alice", "--session", "s1",
         "--ttl", "120"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "GATEWAY_JWT_SECRET": SECRET},
    )  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    claims = jwt.decode(minted.stdout.strip(), SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["sid"]) == ("alice", "s1")
    assert 110 <= claims["exp"] - time.time() <= 120
    refused = subprocess.run(
        [sys.executable, "-m", "gateway", "token", "--user", "alice"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "GATEWAY_JWT_SECRET"},
    )  # fmt: skip
    assert refused.returncode == 2
    assert "GATEWAY_JWT_SECRET" in refused.stderr


@pytest.mark.parametrize(
    ("credential", "reason"),
    [
        (None, "a bearer credential is required"),
        ("not-a-token", "not a valid token or API key"),
        (mint_token("x" * 40, "alice", session_id=None, ttl_s=60), "not a valid token"),
        ("expired", "the token has expired"),
    ],
)
async def test_no_valid_credential_is_401(
    secured: Callable[..., Any], credential: str | None, reason: str
) -> None:
    client = await secured()
    if credential == "expired":
        credential = token("alice", ttl_s=-120)  # beyond the 30 s leeway
    caller = HeadlessCaller()
    try:
        response = await dial(client, caller, credential)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="adk-webrtc-gateway"'
        body = await response.json()
        assert body["error"]["code"] == "unauthorized"
        assert reason in body["error"]["message"]
        assert credential is None or credential not in await response.text()
    finally:
        await caller.close()


async def test_calls_belong_to_their_user(secured: Callable[..., Any]) -> None:
    client = await secured()
    alice, bob = HeadlessCaller(), HeadlessCaller()
    try:
        response = await dial(client, alice, token("alice"))
        assert response.status == 201
        location = response.headers["Location"]
        frag = "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
        patch_headers = {
            "Content-Type": "application/trickle-ice-sdpfrag",
            "If-Match": response.headers["ETag"],
        }
        as_bob = bearer(token("bob"))
        denied = await client.patch(location, data=frag, headers={**patch_headers, **as_bob})
        assert denied.status == 403
        assert (await client.delete(location, headers=as_bob)).status == 403
        assert (await client.delete(location)).status == 401
        # Any of alice's tokens (a refreshed one) may act on her call.
        mine = bearer(token("alice", ttl_s=30))
        ok = await client.patch(location, data=frag, headers={**patch_headers, **mine})
        assert ok.status == 204
        assert (await client.delete(location, headers=mine)).status == 204
        # An API key may act on any call.
        response = await dial(client, bob, token("bob"))
        assert response.status == 201
        assert (
            await client.delete(response.headers["Location"], headers=bearer(API_KEY))
        ).status == 204
    finally:
        await alice.close()
        await bob.close()


async def test_conversations_belong_to_their_user(secured: Callable[..., Any]) -> None:
    client = await secured()
    callers = [HeadlessCaller() for _ in range(5)]
    try:
        first = await dial(client, callers[0], token("alice"))
        assert first.status == 201
        session = first.headers["X-Session-Id"]
        await client.delete(first.headers["Location"], headers=bearer(token("alice")))
        # Another user continuing it: 404, exactly as for a conversation that does not exist.
        stolen = await dial(client, callers[1], token("bob"), f"?session_id={session}")
        assert stolen.status == 404
        assert (await stolen.json())["error"]["code"] == "unknown_session"
        # Naming another user than the token's: 403.
        named = await dial(client, callers[2], token("alice"), "?user_id=bob")
        assert named.status == 403
        # A token bound to a conversation grants that one only, and continues it.
        bound = token("alice", session=session)
        other = await dial(client, callers[3], bound, "?session_id=someone-else")
        assert other.status == 403
        again = await dial(client, callers[4], bound)
        assert again.status == 201
        assert again.headers["X-Session-Id"] == session
        await client.delete(again.headers["Location"], headers=bearer(bound))
    finally:
        for caller in callers:
            await caller.close()


async def test_stats_need_an_admin_key(secured: Callable[..., Any]) -> None:
    client = await secured()
    assert (await client.get("/stats")).status == 401
    assert (await client.get("/stats", headers=bearer(token("alice")))).status == 403
    admin = await client.get("/stats", headers=bearer(API_KEY))
    assert admin.status == 200
    assert (await admin.json())["limits"]["auth_failures"] == 1  # the anonymous attempt
    assert (await client.get("/healthz")).status == 200  # load balancers need no key


async def test_websocket_credentials_user_and_origin(secured: Callable[..., Any]) -> None:
    client = await secured(allowed_origins="https://app.example")
    url = "/ws/alice?is_audio=false&events=1"
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect(url)
    assert refused.value.status == 401
    with pytest.raises(WSServerHandshakeError) as wrong_user:
        await client.ws_connect(f"/ws/bob?is_audio=false&token={token('alice')}")
    assert wrong_user.value.status == 403
    with pytest.raises(WSServerHandshakeError) as cross_site:
        await client.ws_connect(
            url, protocols=("bearer", f"bearer.{token('alice')}"),
            headers={"Origin": "https://evil.example"},
        )  # fmt: skip
    assert cross_site.value.status == 403
    for how in ("subprotocol", "query"):
        if how == "subprotocol":
            ws = await client.ws_connect(
                url, protocols=("bearer", f"bearer.{token('alice')}"),
                headers={"Origin": "https://app.example"},
            )  # fmt: skip
            assert ws.protocol == "bearer"  # the credential is never echoed
        else:
            ws = await client.ws_connect(f"{url}&token={token('alice')}")
        session = await ws.receive_json(timeout=10)
        assert session["type"] == "session"
        await ws.send_json({"mime_type": "text/plain", "data": "hello"})
        reply = await ws.receive_json(timeout=10)
        assert reply["type"] in ("text", "transcript", "turn_complete")
        await ws.close()


async def test_failed_logins_are_limited(secured: Callable[..., Any]) -> None:
    client = await secured(auth_failures_per_minute=3)
    statuses = [
        (
            await client.post("/calls", data="v=0", headers={"Content-Type": SDP, **bearer("bad")})
        ).status
        for _ in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]
    limited = await client.post("/calls", data="v=0", headers={"Content-Type": SDP})
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert (await limited.json())["error"]["code"] == "rate_limited"


async def test_setups_per_minute_and_calls_per_user(
    secured: Callable[..., Any],
) -> None:
    client = await secured(offers_per_minute=3, calls_per_user=1)
    callers = [HeadlessCaller() for _ in range(4)]
    try:
        first = await dial(client, callers[0], token("alice"))
        assert first.status == 201
        second = await dial(client, callers[1], token("alice"))
        assert second.status == 429
        assert (await second.json())["error"]["code"] == "too_many_sessions"
        assert (await dial(client, callers[2], token("bob"))).status == 201
        fourth = await dial(client, callers[3], token("carol"))
        assert fourth.status == 429  # the address's 3 set-ups a minute are spent
        assert (await fourth.json())["error"]["code"] == "rate_limited"
        assert int(fourth.headers["Retry-After"]) > 0
        stats = await (await client.get("/stats", headers=bearer(API_KEY))).json()
        assert stats["limits"]["sessions_per_user_refused"] == 1
        assert stats["limits"]["rate_limited_setups"] == 1
    finally:
        for caller in callers:
            await caller.close()


async def test_calls_and_websockets_share_one_budget(start_gateway: Callable[..., Any]) -> None:
    client = await start_gateway(FakeAgentConnector(), max_calls=1)
    ws = await client.ws_connect("/ws/alice?is_audio=false&events=1")
    try:
        assert (await ws.receive_json(timeout=10))["type"] == "session"
        caller = HeadlessCaller()
        try:
            response = await dial(client, caller, None)
            assert response.status == 503
            assert (await response.json())["error"]["code"] == "at_capacity"
        finally:
            await caller.close()
    finally:
        await ws.close()


async def test_a_call_ends_at_its_maximum_length(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector()
    client = await start_gateway(connector, max_call_s=1.5)
    caller = HeadlessCaller()
    try:
        response = await dial(client, caller, None)
        assert response.status == 201
        await caller.wait_connected()
        started = time.monotonic()
        told = await caller.wait_message(type="error", limit_s=10)
        assert told["code"] == "call_too_long"
        assert told["fatal"] is True
        await asyncio.wait_for(caller.dropped.wait(), 10)  # the gateway closed the call
        assert 0.5 <= time.monotonic() - started <= 5.0
        assert connector.last.closed
        stats = await (await client.get("/stats")).json()
        assert stats["limits"]["ended_max_length"] == 1
    finally:
        await caller.close()


async def test_a_caller_gone_silent_is_ended(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector()
    client = await start_gateway(connector, call_idle_s=1.0)
    caller = HeadlessCaller()
    try:
        response = await dial(client, caller, None)
        assert response.status == 201
        await caller.wait_connected()
        caller.mic.play_pcm(tone_pcm(1.0))
        await asyncio.sleep(1.5)  # media flowing: the call lives past the idle limit
        assert connector.sessions
        assert not connector.last.closed
        caller.mic.stop()  # the caller's RTP stops, as when its app is killed
        started = time.monotonic()
        async with asyncio.timeout(10):
            while not connector.last.closed:
                await asyncio.sleep(0.05)
        assert time.monotonic() - started <= 4.0
        stats = await (await client.get("/stats")).json()
        assert stats["limits"]["ended_idle"] == 1
    finally:
        await caller.close()


async def test_typed_turns_beyond_the_rate_are_refused(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector()
    client = await start_gateway(connector, text_turns_per_s=1.0)
    caller = HeadlessCaller()
    try:
        assert (await dial(client, caller, None)).status == 201
        await caller.wait_channel_open()
        await caller.wait_message(type="session")
        for n in range(20):
            caller.send({"type": "text", "text": f"turn {n}"})
        async with asyncio.timeout(5):
            while len([m for m in caller.messages if m.get("code") == "rate_limited"]) < 10:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        texts = connector.last.texts
        assert 5 <= len(texts) <= 7  # the burst of 5 (and what 1 s^-1 refills meanwhile)
        assert texts[0] == "turn 0"
        assert (
            len(texts) + len([m for m in caller.messages if m.get("code") == "rate_limited"]) == 20
        )
    finally:
        await caller.close()
