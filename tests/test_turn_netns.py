"""A call whose only path is a TURN relay: caller and gateway in network namespaces
with no route between them, coturn in a third namespace with a leg into each
(`tests.support.netem.topologies.py`; needs root).

The gateway is `python -m gateway` as an operator starts it (`--turn-urls`,
`--turn-secret`, JWT auth, the scripted agent through ADK's runner) inside its
namespace; the caller is a headless aiortc peer in its own namespace, configured with
the servers `GET /ice-servers` minted for its token's user; coturn runs with
`use-auth-secret`, listening on the relay address both namespaces route to.

Pins down:
- no direct route: a UDP datagram from the caller's namespace to the gateway's
  address (and back) cannot even be sent (no route), while both can send to the relay;
- the call connects anyway, through the relay: the caller's selected ICE pair has a
  relay candidate, and so does the gateway's (its log names the route);
- audio flows both ways: the caller's speech reaches the agent (its transcript comes
  back) and the agent's answer is heard (loud frames at the caller);
- coturn saw allocations for the token's user and for the gateway.

Through a 1:1 NAT (nftables DNAT/SNAT in a router namespace), the gateway started
with `--public-ip`:
- the caller cannot address the gateway's private address, only the public one;
- the answer's host candidate is the public address, and the call connects
  directly (`host/host`) with audio both ways.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp

from gateway.auth.credentials import mint_token
from tests.support import REPO_ROOT
from tests.support.gateway_process import serving
from tests.support.netem.ns_call import receive_message, send_message
from tests.support.netem.topologies import can_send, exec_prefix, nat_topology, relay_topology
from tests.support.turn_server import turn_server

JWT_SECRET = "n" * 40
TURN_SECRET = "netns-turn-secret"
CALLER_TIMEOUT_S = 60.0


async def _call_from(
    caller_ns: str, base: str, token: str, log: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A call from a caller in `caller_ns` configured with `GET /ice-servers`: the
    caller's report, and the gateway's `/offer` answer."""
    auth = {"Authorization": f"Bearer {token}"}
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            *exec_prefix(caller_ns), sys.executable, "-m",
            "tests.support.netem.caller_process", cwd=REPO_ROOT, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=sink,
        )  # fmt: skip
    try:
        async with asyncio.timeout(CALLER_TIMEOUT_S), aiohttp.ClientSession(base) as http:
            async with http.get("/ice-servers", headers=auth) as response:
                assert response.status == 200
                servers = (await response.json())["ice_servers"]
            await send_message(proc, {"ice_servers": servers})
            offer = (await receive_message(proc))["offer"]
            async with http.post("/offer", json={"sdp": offer, "type": "offer"},
                                 headers=auth) as response:  # fmt: skip
                assert response.status == 200, await response.text()
                answer = await response.json()
            await send_message(proc, {"answer": answer["sdp"]})
            report = (await receive_message(proc))["result"]
            async with http.delete(f"/calls/{answer['call_id']}", headers=auth) as response:
                assert response.status == 204
        return report, answer
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 5)


async def test_a_call_with_no_route_but_the_relay(tmp_path: Path) -> None:
    gateway_log = tmp_path / "gateway.log"
    with relay_topology() as net:
        assert can_send(net.caller_ns, net.relay_ip)
        assert can_send(net.gateway_ns, net.relay_ip)
        assert not can_send(net.caller_ns, net.gateway_ip)
        assert not can_send(net.gateway_ns, net.caller_ip)
        async with (
            turn_server(
                tmp_path / "coturn", listening_ips=[net.relay_ip], secret=TURN_SECRET,
                namespace=net.turn_ns,
            ) as coturn,
            serving(
                "--ice-addresses", net.gateway_ip, "--turn-urls", coturn.url(),
                "--turn-secret", TURN_SECRET, "--jwt-secret", JWT_SECRET,
                "--agent", "gateway.agents.scripted:root_agent", "--session-url", "memory://",
                "--workers", "1", "--log-level", "DEBUG",
                namespace=net.gateway_ns, host=net.http_ip, log=gateway_log,
            ) as gateway,
        ):  # fmt: skip
            token = mint_token(JWT_SECRET, "carol", session_id=None, ttl_s=120)
            report, answer = await _call_from(
                net.caller_ns, gateway.base, token, tmp_path / "caller.log"
            )
    relay_log = coturn.output()  # complete once coturn has stopped
    output = gateway_log.read_text()
    assert "relay" in report["route"].split("/"), report
    assert "speech" in report["user_transcript"], report
    assert report["loud_frames"] >= 50, report  # most of the agent's 1.5 s answer
    assert any(f" {net.relay_ip} " in line and " relay " in line
               for line in answer["sdp"].splitlines()), answer["sdp"]  # fmt: skip
    connected = re.search(r"call \S+ connected \((\w+)/(\w+)\)", output)
    assert connected is not None, output[-3000:]
    assert "relay" in connected.groups(), connected.group(0)
    assert ":carol" in relay_log, relay_log[-2000:]
    assert ":gateway" in relay_log, relay_log[-2000:]


async def test_a_call_through_a_one_to_one_nat(tmp_path: Path) -> None:
    gateway_log = tmp_path / "gateway.log"
    with nat_topology() as net:
        assert can_send(net.caller_ns, net.public_ip)
        assert not can_send(net.caller_ns, net.gateway_ip)
        async with serving(
            "--ice-addresses", net.gateway_ip, "--public-ip", net.public_ip,
            "--jwt-secret", JWT_SECRET, "--agent", "gateway.agents.scripted:root_agent",
            "--session-url", "memory://", "--workers", "1",
            namespace=net.gateway_ns, host=net.http_ip, log=gateway_log,
        ) as gateway:  # fmt: skip
            token = mint_token(JWT_SECRET, "dave", session_id=None, ttl_s=120)
            report, answer = await _call_from(
                net.caller_ns, gateway.base, token, tmp_path / "caller.log"
            )
    hosts = [line.split(" ") for line in answer["sdp"].splitlines()
             if line.startswith("a=candidate:") and " typ host" in line]  # fmt: skip
    assert hosts, answer["sdp"]
    assert {c[4] for c in hosts} == {net.public_ip}
    assert answer["ice_servers"] == []
    assert report["route"] == "host/host", report
    assert "speech" in report["user_transcript"], report
    assert report["loud_frames"] >= 50, report
    assert "connected (host/host)" in gateway_log.read_text()
