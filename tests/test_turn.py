"""ICE servers handed to callers, TURN credentials against a real coturn, NAT 1:1.

A real `turnserver` (coturn 4.6, `use-auth-secret`) on loopback, started by the
test; a real gateway in process with real aiortc callers; nothing mocked.

Pins down:
- a credential minted the gateway's way (`<expiry>:<user>`, base64 HMAC-SHA1 of it
  under the shared secret) gets a relay allocation from coturn, over UDP and TCP;
- one whose expiry has passed, and one minted with another secret, are refused by
  coturn (401), so `--turn-ttl-s` and `--turn-secret` are what coturn enforces;
- `GET /ice-servers`: in anonymous mode (loopback) minted for the user named;
  401 without a credential when auth is on; with a token, the
  TURN URLs with credentials minted for the token's user (expiring `--turn-ttl-s`
  from now), never cached, and coturn accepts them; a page on an allowed origin may
  fetch it cross-origin;
- `POST /offer`'s answer carries the same `ice_servers`;
- the gateway allocates on its TURN relay itself: its answer has a relay candidate
  on coturn's relay address;
- a TURN server that does not answer does not stop calls: the answer comes without
  a relay candidate and the call connects directly;
- `--public-ip`: the answer's host candidates announce the public address;
- the ICE policy lets callers' candidates on the gateway's own TURN server (and the
  public IP's range) through, even on a private range.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aioice import stun, turn

from gateway.app import ice_policy
from gateway.auth.credentials import mint_token
from gateway.config import load_settings
from gateway.rtc.ice_servers import IceServers, turn_rest_credentials
from gateway.rtc.peer_connection import route
from tests.support.fakes import FakeAgentConnector
from tests.support.gateway_process import free_port
from tests.support.peers import HeadlessCaller
from tests.support.turn_server import TurnServer, turn_server

JWT_SECRET = "j" * 40
TURN_SECRET = "turn-shared-secret-for-tests"
SDP = "application/sdp"


@pytest.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[TurnServer]:
    async with turn_server(tmp_path / "coturn", secret=TURN_SECRET, port=free_port()) as server:
        yield server


class _Relayed(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def allocate(
    server: TurnServer, username: str, password: str, transport: str = "udp"
) -> tuple[str, int]:
    """A TURN allocation on `server` with these credentials (aioice's TURN client, as
    the gateway's ICE uses it); its relayed address. Released before returning."""
    relay, protocol = await turn.create_turn_endpoint(
        _Relayed,
        server_addr=(server.listening_ips[0], server.port),
        username=username,
        password=password,
        transport=transport,
    )
    relayed: tuple[str, int] = relay.get_extra_info("sockname")
    relay.close()
    await asyncio.wait_for(protocol.closed, 5)
    return relayed


async def refusal(server: TurnServer, username: str, password: str) -> int:
    """The STUN error code coturn refuses an allocation with."""
    with pytest.raises(stun.TransactionFailed) as refused:
        await allocate(server, username, password)
    code: int = refused.value.response.attributes["ERROR-CODE"][0]
    return code


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_minted_credential_gets_an_allocation(coturn: TurnServer, transport: str) -> None:
    username, password = turn_rest_credentials(TURN_SECRET, "alice", ttl_s=600, now=time.time())
    host, port = await allocate(coturn, username, password, transport)
    assert host == coturn.relay_ip
    assert 49160 <= port <= 49200  # the relay port range the starter configures


async def test_an_expired_credential_is_refused(coturn: TurnServer) -> None:
    username, password = turn_rest_credentials(TURN_SECRET, "alice", ttl_s=-60, now=time.time())
    assert await refusal(coturn, username, password) == 401
    # The same user a minute later in the future is fine: only the expiry differs.
    username, password = turn_rest_credentials(TURN_SECRET, "alice", ttl_s=60, now=time.time())
    assert (await allocate(coturn, username, password))[0] == coturn.relay_ip


async def test_a_credential_under_another_secret_is_refused(coturn: TurnServer) -> None:
    username, password = turn_rest_credentials(
        "not-the-secret", "alice", ttl_s=600, now=time.time()
    )
    assert await refusal(coturn, username, password) == 401


@pytest.fixture
async def secured_gateway(
    start_gateway: Callable[..., Any], coturn: TurnServer
) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await start_gateway(
        FakeAgentConnector(),
        jwt_secret=JWT_SECRET,
        turn_urls=f"{coturn.url()},{coturn.url(transport='tcp')}",
        turn_secret=TURN_SECRET,
        turn_ttl_s=900,
        allowed_origins="https://app.example",
    )
    return client


async def test_ice_servers_need_a_credential(secured_gateway: TestClient[Any, Any]) -> None:
    response = await secured_gateway.get("/ice-servers")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.json())["error"]["code"] == "unauthorized"
    forged = token("alice", secret="x" * 40)
    response = await secured_gateway.get("/ice-servers", headers=_bearer(forged))
    assert response.status == 401


async def test_ice_servers_are_minted_for_the_token_user(
    secured_gateway: TestClient[Any, Any], coturn: TurnServer
) -> None:
    before = time.time()
    response = await secured_gateway.get("/ice-servers", headers=_bearer(token("alice")))
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    servers = (await response.json())["ice_servers"]
    assert [s["urls"] for s in servers] == [coturn.url(), coturn.url(transport="tcp")]
    expiry, _, user = servers[0]["username"].partition(":")
    assert user == "alice"
    assert before + 900 <= int(expiry) + 1 <= time.time() + 901
    # What the browser gets is what coturn accepts.
    relayed = await allocate(coturn, servers[0]["username"], servers[0]["credential"])
    assert relayed[0] == coturn.relay_ip
    # A user named in the query cannot override the token's.
    response = await secured_gateway.get(
        "/ice-servers?user_id=mallory", headers=_bearer(token("alice"))
    )
    assert response.status == 403


async def test_ice_servers_in_anonymous_mode_name_the_requested_user(
    start_gateway: Callable[..., Any], coturn: TurnServer
) -> None:
    client: TestClient[Any, Any] = await start_gateway(
        FakeAgentConnector(), turn_urls=coturn.url(), turn_secret=TURN_SECRET
    )
    response = await client.get("/ice-servers?user_id=web-42")
    assert response.status == 200
    (server,) = (await response.json())["ice_servers"]
    assert server["username"].endswith(":web-42")
    assert (await client.get("/ice-servers?user_id=bad%20id")).status == 400
    assert (await client.get("/ice-servers")).status == 200  # the anonymous user


async def test_ice_servers_cross_origin(secured_gateway: TestClient[Any, Any]) -> None:
    preflight = await secured_gateway.options(
        "/ice-servers",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    assert preflight.status == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = await secured_gateway.get(
        "/ice-servers", headers={**_bearer(token("alice")), "Origin": "https://evil.example"}
    )
    assert other.status == 403


async def test_offer_answer_carries_ice_servers_and_a_relay_candidate(
    secured_gateway: TestClient[Any, Any], coturn: TurnServer
) -> None:
    caller = HeadlessCaller()
    try:
        response = await secured_gateway.post(
            "/offer",
            json={"sdp": await caller.offer(), "type": "offer"},
            headers=_bearer(token("bob")),
        )
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body["ice_servers"][0]["urls"] == coturn.url()
        assert body["ice_servers"][0]["username"].endswith(":bob")
        # The gateway allocated on the relay for itself (aiortc uses the first TURN URL).
        relay = [c for c in _candidates(body["sdp"]) if c[7] == "relay"]
        assert relay, body["sdp"]
        assert relay[0][4] == coturn.relay_ip
        delete = await secured_gateway.delete(
            f"/calls/{body['call_id']}", headers=_bearer(token("bob"))
        )
        assert delete.status == 204
    finally:
        await caller.close()


@pytest.mark.slow  # ~5 s: aioice waits out its gathering timeout for the relay
async def test_an_unreachable_relay_does_not_stop_calls(
    start_gateway: Callable[..., Any],
) -> None:
    client: TestClient[Any, Any] = await start_gateway(
        FakeAgentConnector(), turn_urls=f"turn:127.0.0.1:{free_port()}", turn_secret=TURN_SECRET
    )
    caller = HeadlessCaller()
    try:
        result = await caller.dial(client.session, str(client.make_url("")).rstrip("/"))
        assert result.status == 201, result.body
        assert [c[7] for c in _candidates(result.body)] == ["host"] * len(_candidates(result.body))
        await caller.wait_connected()
        assert route(caller.pc) == "host/host"
        assert (await client.delete(result.location or "")).status == 204
    finally:
        await caller.close()


async def test_public_ip_is_announced_in_host_candidates(
    start_gateway: Callable[..., Any],
) -> None:
    client: TestClient[Any, Any] = await start_gateway(
        FakeAgentConnector(), public_ip="203.0.113.7"
    )
    caller = HeadlessCaller()
    try:
        # The answer is read, not applied: nothing is sent to the documentation address.
        response = await client.post("/calls", data=await caller.offer(), headers={
            "Content-Type": SDP})  # fmt: skip
        assert response.status == 201
        hosts = [c for c in _candidates(await response.text()) if c[7] == "host"]
        assert hosts
        assert {c[4] for c in hosts} == {"203.0.113.7"}
        assert (await client.delete(response.headers["Location"])).status == 204
    finally:
        await caller.close()


def test_policy_admits_the_gateways_own_turn_server_and_public_range() -> None:
    settings = load_settings(
        {
            "ice_addresses": "10.1.2.3",
            "turn_urls": "turn:172.20.0.9:3478,turns:[fd00::9]:5349,turn:turn.example:3478",
            "turn_secret": TURN_SECRET,
            "ice_servers": "turn:u:p@192.168.7.7:3478,stun:192.168.8.8:3478",
            "public_ip": "100.64.1.1",
        },
        environ={},
    )
    servers = IceServers(
        settings.ice_servers, turn_urls=settings.turn_urls, turn_secret=settings.turn_secret
    )
    assert servers.turn_addresses() == ("192.168.7.7", "172.20.0.9", "fd00::9")
    policy = ice_policy(settings, servers, ("10.1.2.3",))
    for admitted in ("172.20.0.9", "192.168.7.7", "fd00::9", "10.9.9.9", "100.64.200.1"):
        assert policy.refusal(admitted, 50000, "udp", 1) is None, admitted
    for refused in ("172.20.0.10", "192.168.8.8", "192.168.7.8", "169.254.169.254"):
        assert policy.refusal(refused, 50000, "udp", 1) == "address", refused
    without = load_settings({"ice_addresses": "10.1.2.3"}, environ={})
    plain = ice_policy(without, IceServers(), ("10.1.2.3",))
    assert plain.refusal("100.64.200.1", 50000, "udp", 1) == "address"


def _candidates(sdp: str) -> list[list[str]]:
    """The fields of each `a=candidate:` line (RFC 8839: [4] address, [7] type)."""
    return [line.split(" ") for line in sdp.splitlines() if line.startswith("a=candidate:")]


def token(user: str, *, secret: str = JWT_SECRET) -> str:
    return mint_token(secret, user, session_id=None, ttl_s=60)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
