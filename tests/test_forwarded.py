"""The client a trusted reverse proxy names (`--trusted-proxies`), and no one else's word.

Pins down:
- from a trusted peer, the client is the right-most `X-Forwarded-For` hop that is not
  itself a trusted proxy (all trusted: the left-most); hops written as `v4:port`,
  `[v6]:port` or IPv4-mapped are read; a garbage hop a trusted proxy passes on
  stops the walk at the last good one; the scheme is the `X-Forwarded-Proto` value
  of the client's hop (a single value stands for every hop; only http/https);
- from any other peer, or with no trusted proxies, the headers do not count;
- in a running gateway (in process, over loopback, trusting 127.0.0.1): set-ups per
  minute and pending calls per source are counted against the forwarded client, and
  a spoofed header from an untrusted peer changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.forwarded import ForwardedClient, TrustedProxies
from tests.support.fakes import FakeAgentConnector
from tests.support.peers import HeadlessCaller

SDP = {"Content-Type": "application/sdp"}
PROXIES = TrustedProxies(["10.0.0.0/8", "2001:db8::/32", "127.0.0.1/32"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "proto", "expected"),
    [
        # One proxy: the address it appended.
        ("10.0.0.1", ["203.0.113.7"], ["https"], ForwardedClient("203.0.113.7", "https")),
        # What the client wrote itself, left of it, does not count.
        ("10.0.0.1", ["6.6.6.6, 203.0.113.7"], ["https"], ForwardedClient("203.0.113.7", "https")),
        # Two trusted hops: the client is left of the inner proxy; the proto list is
        # per hop (the outer proxy's "https", the inner one's "http").
        (
            "10.0.0.1",
            ["203.0.113.7, 10.0.0.2"],
            ["https, http"],
            ForwardedClient("203.0.113.7", "https"),
        ),
        # Every hop trusted: the left-most (a client on the proxies' own network).
        ("10.0.0.1", ["10.0.0.9, 10.0.0.2"], [], ForwardedClient("10.0.0.9", None)),
        # Several header lines are one list; ports and brackets are proxies' spelling.
        (
            "10.0.0.1",
            ["6.6.6.6", "203.0.113.7:5678"],
            ["HTTPS"],
            ForwardedClient("203.0.113.7", "https"),
        ),
        ("2001:db8::1", ["[2001:db8:1::5]:443"], [], ForwardedClient("2001:db8:1::5", None)),
        ("::ffff:10.0.0.1", ["::ffff:203.0.113.7"], [], ForwardedClient("203.0.113.7", None)),
        # Garbage from a trusted proxy: the last good hop (here the peer itself).
        ("10.0.0.1", ["unknown"], ["https"], ForwardedClient("10.0.0.1", None)),
        ("10.0.0.1", ["1.2.3.4, junk, 10.0.0.2"], [], ForwardedClient("10.0.0.2", None)),
        # Squid's "unknown" left of the client is never read.
        ("10.0.0.1", ["unknown, 203.0.113.7"], [], ForwardedClient("203.0.113.7", None)),
        # A scheme that is not http/https is not believed; no header: the peer.
        ("10.0.0.1", ["203.0.113.7"], ["javascript"], ForwardedClient("203.0.113.7", None)),
        ("10.0.0.1", [], ["https"], ForwardedClient("10.0.0.1", None)),
        # An untrusted peer: nothing it says counts.
        ("192.0.2.1", ["203.0.113.7"], ["https"], None),
        ("10.0.0.1.evil", ["203.0.113.7"], ["https"], None),
    ],
)
def test_the_client_is_the_right_most_untrusted_hop(
    peer: str, forwarded_for: list[str], proto: list[str], expected: ForwardedClient | None
) -> None:
    assert PROXIES.client(peer, forwarded_for, proto) == expected


def test_a_long_chain_is_read_from_the_right_only() -> None:
    hops = ", ".join(["10.0.0.5"] * 1000 + ["10.0.0.6"])
    # Only the last 32 hops are looked at: all trusted, so the left-most of those.
    assert PROXIES.client("10.0.0.1", [hops], []) == ForwardedClient("10.0.0.5", None)


async def start(start_gateway: Callable[..., Any], **overrides: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await start_gateway(
        FakeAgentConnector(), no_auth=True, offers_per_minute=3, **overrides
    )
    return client


async def setups(client: TestClient[Any, Any], forwarded_for: list[str]) -> list[int]:
    """One call set-up (not an offer: 400 once counted) per `X-Forwarded-For` value."""
    statuses = []
    for hop in forwarded_for:
        response = await client.post("/calls", data="v=0", headers={**SDP, "X-Forwarded-For": hop})
        statuses.append(response.status)
    return statuses


async def test_set_ups_are_counted_per_forwarded_client(start_gateway: Callable[..., Any]) -> None:
    client = await start(start_gateway, trusted_proxies="127.0.0.1/32")
    # Three clients behind the proxy: each its own budget.
    assert await setups(client, ["203.0.113.1", "203.0.113.2", "203.0.113.3"]) == [400] * 3
    # One of them, past its budget, whatever it writes left of the proxy's hop.
    hops = ["203.0.113.1", "9.9.9.9, 203.0.113.1", "203.0.113.1"]
    assert await setups(client, hops) == [400, 400, 429]


@pytest.mark.parametrize("trusted", [None, "10.0.0.0/8"])
async def test_an_untrusted_peer_cannot_choose_its_address(
    start_gateway: Callable[..., Any], trusted: str | None
) -> None:
    client = await start(start_gateway, trusted_proxies=trusted)
    hops = [f"203.0.113.{n}" for n in range(4)]
    assert await setups(client, hops) == [400, 400, 400, 429]  # all counted as 127.0.0.1


async def test_pending_calls_are_counted_per_forwarded_client(
    start_gateway: Callable[..., Any],
) -> None:
    client = await start(
        start_gateway, trusted_proxies="127.0.0.1/32", max_pending_calls_per_source=1
    )
    callers = [HeadlessCaller() for _ in range(3)]
    try:
        statuses = []
        for caller, hop in zip(callers, ["203.0.113.1", "203.0.113.1", "203.0.113.2"], strict=True):
            offer = await caller.offer()  # never answered: the call stays pending
            headers = {**SDP, "X-Forwarded-For": hop}
            response = await client.post("/calls", data=offer, headers=headers)
            body = await response.json() if response.status != 201 else {}
            statuses.append((response.status, body.get("error", {}).get("code")))
        assert statuses == [(201, None), (429, "too_many_pending"), (201, None)]
    finally:
        for caller in callers:
            await caller.close()
