"""The ICE candidate policy: which addresses a caller can make the gateway probe.

Pins down:
- address verdicts: public and mDNS allowed; link-local, multicast, broadcast,
  unspecified and reserved never (not even when configured); private, CGNAT and
  loopback only when configured or when the gateway's own ICE address is there;
  IPv4-mapped IPv6 judged as IPv4; ports below 1024, TCP and RTCP components refused;
- ufrag 4-256 and password 22-256 ice-chars (RFC 8445), anything else refused;
- the per-call cap counts offer and trickle together; duplicates do not count; once
  a candidate is dropped, so is `a=end-of-candidates`, and a caller whose candidates
  are all refused still connects (the gateway learns its address from its checks);
- over loopback: the gateway sends STUN to the first 16 allowed candidates an offer
  and its trickle name and to nothing else, and the answer advertises 64 KiB;
- one source address gets at most `max_pending_calls_per_source` calls that have
  not connected (429 `too_many_pending` with Retry-After beyond); connected calls
  and ended ones free their place; an offer forwarded between workers keeps its
  source;
- the settings: CIDR lists parsed from the environment, a bad CIDR refused.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.calls.admission import Admission
from gateway.calls.manager import CallManager
from gateway.cluster.routing import internal_app
from gateway.config import ConfigError, load_settings
from gateway.errors import InvalidSdp
from gateway.rtc import ice
from gateway.rtc.ice_policy import CandidateBudget, IcePolicy, check_credentials
from tests.fuzz.amplification import hostile_offer, sdpfrag
from tests.fuzz.edge import SDP, SDPFRAG
from tests.fuzz.udp_listeners import UdpListeners
from tests.support.fakes import FakeAgentConnector
from tests.support.peers import HeadlessCaller, live_call

PUBLIC = IcePolicy.from_settings(
    max_candidates=16, allowed_networks=(), own_addresses=("203.0.113.1",), allow_mdns=True
)


@pytest.mark.parametrize(
    ("host", "verdict"),
    [
        ("8.8.8.8", None),
        ("2a00:1450:4001:80b::200e", None),
        ("25fda121-d59b-4afa-8b9e-4e202a24da5d.local", None),
        ("example.com", "address"),  # aioice would not resolve it; nor do we count it
        ("169.254.169.254", "address"),  # cloud metadata
        ("fe80::1", "address"),
        ("224.0.0.251", "address"),
        ("ff02::1", "address"),
        ("255.255.255.255", "address"),
        ("0.0.0.0", "address"),
        ("::", "address"),
        ("240.0.0.1", "address"),
        ("10.1.2.3", "address"),
        ("172.16.0.9", "address"),
        ("192.168.1.20", "address"),
        ("fd00::1", "address"),
        ("100.64.0.1", "address"),
        ("127.0.0.1", "address"),
        ("::1", "address"),
        ("::ffff:10.0.0.1", "address"),
        ("::ffff:8.8.8.8", None),
        ("203.0.113.7", "address"),  # documentation range: nobody's
    ],
)
def test_a_public_gateway_probes_only_public_addresses(host: str, verdict: str | None) -> None:
    assert PUBLIC.refusal(host, 40000, "udp", 1) == verdict


def test_private_ranges_by_configuration_or_by_the_gateways_own_address() -> None:
    lan = IcePolicy.from_settings(
        max_candidates=16,
        allowed_networks=("192.168.0.0/16", "169.254.0.0/16"),
        own_addresses=("10.0.0.5", "127.0.0.1"),
        allow_mdns=False,
    )
    assert lan.refusal("192.168.1.20", 40000, "udp", 1) is None  # configured
    assert lan.refusal("10.200.0.1", 40000, "udp", 1) is None  # the gateway is in 10/8
    assert lan.refusal("127.0.0.9", 40000, "udp", 1) is None  # and on loopback
    assert lan.refusal("172.16.0.9", 40000, "udp", 1) == "address"  # neither
    assert lan.refusal("100.64.0.1", 40000, "udp", 1) == "address"
    assert lan.refusal("169.254.169.254", 40000, "udp", 1) == "address"  # never, configured or not
    assert lan.refusal("a.local", 40000, "udp", 1) == "address"  # mDNS off


@pytest.mark.parametrize(
    ("port", "protocol", "component", "verdict"),
    [
        (1024, "udp", 1, None),
        (65535, "UDP", 1, None),
        (1023, "udp", 1, "port"),
        (53, "udp", 1, "port"),
        (0, "udp", 1, "port"),
        (65536, "udp", 1, "port"),
        (40000, "tcp", 1, "transport"),
        (40000, "udp", 2, "transport"),
    ],
)
def test_ports_transports_and_components(
    port: int, protocol: str, component: int, verdict: str | None
) -> None:
    assert PUBLIC.refusal("8.8.8.8", port, protocol, component) == verdict


@pytest.mark.parametrize(
    ("ufrag", "pwd", "ok"),
    [
        ("abcd", "p" * 22, True),
        ("u" * 256, "p" * 256, True),
        ("a+/9", "A/+0" * 6, True),
        ("abc", "p" * 22, False),
        ("u" * 257, "p" * 22, False),
        ("abcd", "p" * 21, False),
        ("abcd", "p" * 257, False),
        ("ab cd", "p" * 22, False),
        ("abcd", "p" * 21 + "\u00e9", False),
        (None, "p" * 22, False),
        ("abcd", None, False),
    ],
)
def test_ice_credentials_are_sized_as_rfc_8445_says(
    ufrag: str | None, pwd: str | None, ok: bool
) -> None:
    if ok:
        check_credentials(ufrag, pwd)
    else:
        with pytest.raises(InvalidSdp, match="RFC 8445"):
            check_credentials(ufrag, pwd)


def line(host: str, port: int = 40000) -> str:
    return f"a=candidate:1 1 udp 2130706431 {host} {port} typ host"


def test_the_cap_counts_offer_and_trickle_together() -> None:
    budget = CandidateBudget(IcePolicy(max_candidates=3))
    offer = "v=0\r\n" + "".join(line("8.8.8.8", 40000 + n) + "\r\n" for n in range(2))
    offer += line("10.0.0.1") + "\r\n" + line("8.8.8.8", 40000) + "\r\n"  # refused, duplicate
    filtered = budget.filter_sdp(offer + "a=end-of-candidates\r\n")
    assert filtered.count("a=candidate:") == 2
    assert "a=end-of-candidates" not in filtered  # ICE waits for peer-reflexive ones
    third = budget.admit(line("8.8.4.4"))
    assert third is not None
    assert (third.ip, third.port) == ("8.8.4.4", 40000)
    assert budget.admit(line("8.8.4.5")) is None  # over the cap
    assert budget.admit(line("8.8.4.4")) is None  # a duplicate is ignored, not counted
    assert budget.accepted == 3
    assert dict(budget.dropped) == {"address": 1, "over_cap": 1}
    with pytest.raises(InvalidSdp):
        budget.admit("a=candidate:1 1 udp")
    whole = "v=0\r\n" + line("8.8.8.8") + "\r\na=end-of-candidates\r\n"
    assert CandidateBudget(IcePolicy()).filter_sdp(whole) == whole  # nothing dropped


async def test_the_gateway_probes_the_first_16_allowed_candidates_and_nothing_else(
    start_gateway: Callable[..., Any],
) -> None:
    client: TestClient[Any, Any] = await start_gateway(FakeAgentConnector())
    listeners = await UdpListeners.open(40)
    try:
        lines = list(listeners.candidate_lines())
        hostile = [line("10.0.0.1"), line("169.254.169.254", 80), line("127.0.0.2", 80)]
        offer = hostile_offer([*hostile, *lines[:10]], ufrag_chars=256)
        async with client.post("/calls", data=offer.encode(), headers=SDP) as response:
            assert response.status == 201
            location = response.headers["Location"]
            assert "a=max-message-size:65536" in await response.text()
            if_match = {"If-Match": response.headers["ETag"]}
        patch = sdpfrag(lines[10:])
        async with client.patch(
            location, data=patch.encode(), headers={**SDPFRAG, **if_match}
        ) as response:
            assert response.status == 204
        await asyncio.sleep(1.0)  # checks start every 20 ms: 16 take 0.3 s
        assert listeners.probed() == listeners.addresses[:16]
        assert {n for r in listeners.received.values() for n in r.usernames} <= {256 + 1 + 4}
        assert (await client.delete(location)).status == 204
    finally:
        listeners.close()


async def test_a_caller_whose_candidates_are_all_refused_still_connects(
    start_gateway: Callable[..., Any],
) -> None:
    """The gateway learns the caller's address from the caller's own checks."""
    client: TestClient[Any, Any] = await start_gateway(FakeAgentConnector())
    caller = HeadlessCaller()
    try:
        offer = re.sub(
            r"(a=candidate:\S+ \S+ \S+ \S+ )127\.0\.0\.1", r"\g<1>10.0.0.1", await caller.offer()
        )
        assert "10.0.0.1" in offer
        assert "a=end-of-candidates" in offer
        async with client.post("/calls", data=offer, headers=SDP) as response:
            assert response.status == 201
            await caller.accept(await response.text())
            location = response.headers["Location"]
        await caller.wait_connected()
        assert (await client.delete(location)).status == 204
    finally:
        await caller.close()


async def test_one_source_may_have_only_so_many_calls_connecting(
    start_gateway: Callable[..., Any],
) -> None:
    client: TestClient[Any, Any] = await start_gateway(
        FakeAgentConnector(), max_pending_calls_per_source=1
    )
    pending, refused = HeadlessCaller(), HeadlessCaller()
    try:
        async with live_call(client):  # connected: it does not count
            first = await client.post("/calls", data=await pending.offer(), headers=SDP)
            assert first.status == 201  # never applied: it stays pending
            second = await client.post("/calls", data=await refused.offer(), headers=SDP)
            assert second.status == 429
            assert int(second.headers["Retry-After"]) > 0
            assert (await second.json())["error"]["code"] == "too_many_pending"
            assert (await client.delete(first.headers["Location"])).status == 204
            third = await client.post("/calls", data=await refused.offer(), headers=SDP)
            assert third.status == 201
            assert (await client.delete(third.headers["Location"])).status == 204
    finally:
        await pending.close()
        await refused.close()


async def test_a_forwarded_offer_counts_against_its_original_source() -> None:
    """Between workers, the internal offer carries the client's address along."""
    manager = CallManager(
        FakeAgentConnector(),
        lambda: ice.rtc_configuration([]),
        admission=Admission(10),
        max_pending_per_source=1,
    )
    client = TestClient(TestServer(internal_app(manager, max_offer_bytes=65536)))
    await client.start_server()
    callers = [HeadlessCaller(), HeadlessCaller(), HeadlessCaller()]
    try:
        statuses = []
        sources = ["198.51.100.7", "198.51.100.7", "198.51.100.8"]
        for caller, source in zip(callers, sources, strict=True):
            body = {"sdp": await caller.offer(), "user_id": "u", "session_id": None,
                    "mode": "audio", "source": source}  # fmt: skip
            async with client.post("/internal/offer", json=body) as response:
                statuses.append(response.status)
        assert statuses == [200, 429, 200]
        assert manager.pending_from("198.51.100.7") == 1
    finally:
        await manager.close()
        await client.close()
        for caller in callers:
            await caller.close()


def test_settings_take_cidr_lists_and_refuse_what_is_not_one() -> None:
    settings = load_settings(
        environ={
            "GATEWAY_ICE_ALLOWED_NETWORKS": "192.168.0.0/16, 10.1.0.0/16",
            "GATEWAY_ICE_MAX_CANDIDATES": "8",
            "GATEWAY_MAX_PENDING_CALLS_PER_SOURCE": "2",
        }
    )
    assert settings.ice_allowed_networks == ("192.168.0.0/16", "10.1.0.0/16")
    assert (settings.ice_max_candidates, settings.max_pending_calls_per_source) == (8, 2)
    with pytest.raises(ConfigError, match="ice_allowed_networks"):
        load_settings(environ={"GATEWAY_ICE_ALLOWED_NETWORKS": "192.168.0.0/33"})
    assert load_settings(environ={}).ice_max_candidates == 16
