"""docs/deploy/nginx.conf, as shipped, in front of a real `python -m gateway`.

Debian's nginx runs the template (ports, certificate and the gateway's address
substituted: tests/support/nginx.py) with a certificate made at test time, in front
of the gateway started with `--trusted-proxies 127.0.0.1/32` and call tokens. Each
client connects to nginx from its own loopback address (127.0.0.x), as separate
machines would. Pins down, all over HTTPS through nginx:
- a real call: the offer and the hang-up go through nginx, media goes straight to
  the gateway over UDP; the caller hears the agent answer;
- the seed WebSocket `/ws/{user_id}` and the bidi-demo `/ws/{user_id}/{session_id}`
  upgrade through nginx (with a browser's `Origin` for the page nginx serves) and
  carry a turn both ways;
- plain HTTP is redirected to HTTPS; a body as large as the gateway accepts reaches
  it, a larger one is refused 413 by nginx, and no offer is written to disk;
- the gateway counts each client by its own address: one client past
  `--offers-per-minute` gets 429 while another, through the same nginx, does not; an
  `X-Forwarded-For` a client sends through nginx does not change whom it is counted
  as; sent straight to the gateway (an untrusted peer) it is ignored; the access log
  names the clients, never nginx.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.auth.credentials import mint_token
from tests.support.gateway_process import GatewayProcess, free_port, serving
from tests.support.live_api_double.certs import make_self_signed_cert
from tests.support.nginx import Nginx, nginx_in_front
from tests.support.peers import HeadlessCaller, assert_answered, seed_turn

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SECRET = "nginx-test-secret-0123456789abcdef-xyz"
SCRIPTED = "gateway.agents.scripted:root_agent"
OFFERS_PER_MINUTE = 4
SDP = {"Content-Type": "application/sdp"}
MAX_OFFER_BYTES = 64 * 1024


@dataclass
class Stack:
    gateway: GatewayProcess
    nginx: Nginx
    tls: Any
    """The client SSL context trusting the test certificate."""

    def client(self, address: str, *, user: str = "alice") -> aiohttp.ClientSession:
        """A client on `address` with a call token for `user`."""
        token = mint_token(SECRET, user, session_id=None, ttl_s=300)
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.tls, local_addr=(address, 0)),
            headers={"Authorization": f"Bearer {token}"},
        )


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    cert = make_self_signed_cert(tmp_path / "tls")
    port = free_port()
    async with (
        serving(
            "--agent", SCRIPTED, "--session-url", "memory://", "--workers", "1",
            "--jwt-secret", SECRET, "--trusted-proxies", "127.0.0.1/32",
            "--offers-per-minute", str(OFFERS_PER_MINUTE), "--user-offers-per-minute", "1000",
            log=tmp_path / "gateway.log", port=port,
        ) as gateway,
        nginx_in_front(port, cert.cert_path, cert.key_path) as nginx,
    ):  # fmt: skip
        yield Stack(gateway, nginx, cert.client_context())


async def bidi_turn(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
    """The bidi-demo protocol: a typed turn, then ADK events until `turnComplete`."""
    await ws.send_json({"type": "text", "text": "hello"})
    texts = []
    async with asyncio.timeout(15):
        while not (event := await ws.receive_json()).get("turnComplete"):
            parts = event.get("content", {}).get("parts", [])
            texts += [p["text"] for p in parts if "text" in p and not event.get("partial")]
    return texts


async def test_a_call_and_both_websockets_through_nginx(stack: Stack) -> None:
    base = stack.nginx.https_base
    wss = base.replace("https://", "wss://")
    async with stack.client("127.0.0.2") as http:
        caller = HeadlessCaller()
        try:
            dialed = await caller.dial(http, base)
            assert dialed.status == 201, dialed.body
            await caller.wait_connected(20)
            await assert_answered(caller)
            assert await caller.hang_up(http, base) == 204
        finally:
            await caller.close()

        # A browser page nginx served sends its own origin: the gateway sees nginx's
        # `Host` (the browser's, port included) and lets it in.
        origin = {"Origin": base}
        async with http.ws_connect(f"{wss}/ws/alice?is_audio=false", headers=origin) as ws:
            assert "You said: hello" in await seed_turn(ws)
        async with http.ws_connect(f"{wss}/ws/alice/s1?modality=text", headers=origin) as ws:
            assert any("You said: hello" in text for text in await bidi_turn(ws))
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{wss}/ws/alice", headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403

        # Bodies: what the gateway accepts passes (400: not SDP), more is nginx's 413.
        async with http.post(f"{base}/calls", data="v" * (MAX_OFFER_BYTES - 100), headers=SDP) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"]  # the gateway's answer, not nginx's
        async with http.post(f"{base}/calls", data="v" * (MAX_OFFER_BYTES + 1), headers=SDP) as r:
            assert r.status == 413
        async with http.get(stack.nginx.http_base + "/", allow_redirects=False) as r:
            assert r.status == 301
            assert r.headers["Location"] == "https://127.0.0.1/"

    # No warning (a body "buffered to a temporary file" is one), no upstream failure.
    log = stack.nginx.error_log()
    assert not re.findall(r".*\[(?:warn|crit|alert|emerg)\].*", log)
    assert "upstream" not in log
    access = stack.gateway.output()
    assert '127.0.0.2 "POST /calls" 201' in access
    assert '127.0.0.2 "GET /ws/{user_id}" 101' in access


async def probe(http: aiohttp.ClientSession, base: str, **headers: str) -> int:
    """A call set-up that counts against the limits (then fails: not an offer)."""
    async with http.post(f"{base}/calls", data="v=0", headers={**SDP, **headers}) as response:
        return response.status


async def test_the_gateway_counts_the_client_not_nginx(stack: Stack) -> None:
    base, direct = stack.nginx.https_base, stack.gateway.base
    limit = OFFERS_PER_MINUTE
    async with stack.client("127.0.0.3") as third, stack.client("127.0.0.4") as fourth:
        assert [await probe(third, base) for _ in range(limit + 1)] == [400] * limit + [429]
        # Same nginx, another client: its own budget (keyed on nginx's address it
        # would be spent).
        assert await probe(fourth, base) == 400
        # A client naming another address through nginx is still counted as itself:
        # nginx appends the address it saw, the gateway takes the right-most.
        assert await probe(fourth, base, **{"X-Forwarded-For": "127.0.0.99"}) == 400
        rest = [await probe(fourth, base) for _ in range(limit - 1)]
        assert rest == [400] * (limit - 2) + [429]

    async with stack.client("127.0.0.5") as fifth, stack.client("127.0.0.6") as sixth:
        # Straight to the gateway, from a peer it does not trust: the header is ignored.
        spoofed = [
            await probe(fifth, direct, **{"X-Forwarded-For": f"198.51.100.{n}"})
            for n in range(limit + 1)
        ]
        assert spoofed == [400] * limit + [429]
        assert await probe(sixth, direct, **{"X-Forwarded-For": "127.0.0.3"}) == 400

    calls = [line for line in stack.gateway.output().splitlines() if '"POST /calls"' in line]
    assert any('127.0.0.3 "POST /calls" 429' in line for line in calls)
    assert any('127.0.0.4 "POST /calls" 429' in line for line in calls)
    assert any('127.0.0.5 "POST /calls" 429' in line for line in calls)
    assert not [line for line in calls if " 127.0.0.1 " in line or "198.51.100." in line]
    assert not [line for line in calls if "127.0.0.99" in line]
    assert json.dumps(await stack.gateway.get("/healthz"))  # still serving
