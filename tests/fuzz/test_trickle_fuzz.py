"""Fuzzing trickle ICE: `PATCH /calls/{id}` with mutated sdpfrags.

Pins down, for one call that never connects and any mutation of a corpus sdpfrag
(`mutations.sdpfrags()`): 204 or a 4xx with a JSON error, never a 5xx; the call
survives every one (a last valid `PATCH` is still taken) and hangs up cleanly. Every
`PATCH` carries the call's `If-Match` (RFC 9725 §4.3.2); the corpus fragments carry
the call's own ICE credentials, as a trickling client's do (others are an ICE
restart, refused with 422).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given

from tests.fuzz.edge import SDP, SDPFRAG
from tests.fuzz.mutations import corpus_sdpfrags, loopback_only, sdpfrags
from tests.support.fakes import FakeAgentConnector
from tests.support.peers import HeadlessCaller

PendingCall = tuple[TestClient[Any, Any], str, dict[str, str], str]


def with_credentials_of(offer: str, sdpfrag: str) -> str:
    """`sdpfrag` with the offer's `a=ice-ufrag`/`a=ice-pwd` lines instead of its own."""
    for name in ("ufrag", "pwd"):
        own = re.search(rf"^a=ice-{name}:[^\r\n]*", offer, re.MULTILINE)
        assert own is not None
        sdpfrag = re.sub(rf"^a=ice-{name}:[^\r\n]*", own.group(0), sdpfrag, flags=re.MULTILINE)
    return sdpfrag


@pytest.fixture
async def pending_call(
    start_gateway: Callable[..., Any],
) -> AsyncIterator[PendingCall]:
    """A call whose caller never applies the answer (ICE keeps listening for more)."""
    client: TestClient[Any, Any] = await start_gateway(
        FakeAgentConnector(), ice_mdns_candidates=False
    )
    caller = HeadlessCaller()
    try:
        offer = (await caller.offer()).replace("a=end-of-candidates\r\n", "")
        async with client.post("/calls", data=offer, headers=SDP) as response:
            assert response.status == 201
            location = response.headers["Location"]
            headers = {**SDPFRAG, "If-Match": response.headers["ETag"]}
        yield client, location, headers, offer
        async with client.delete(location) as hung_up:
            assert hung_up.status == 204
    finally:
        await caller.close()


@given(sdpfrag=sdpfrags())
async def test_a_mutated_sdpfrag_is_taken_or_refused(
    sdpfrag: str, pending_call: PendingCall
) -> None:
    client, location, headers, _ = pending_call
    data = sdpfrag.encode("utf-8", "surrogatepass")
    async with client.patch(location, data=data, headers=headers) as response:
        body = await response.read()
        assert response.status < 500, body[:200]
        if response.status >= 400:
            assert "error" in json.loads(body)
        else:
            assert response.status == 204


async def test_the_corpus_sdpfrags_are_taken(
    pending_call: PendingCall,
) -> None:
    client, location, headers, offer = pending_call
    for sdpfrag in corpus_sdpfrags().values():
        data = with_credentials_of(offer, loopback_only(sdpfrag))
        async with client.patch(location, data=data, headers=headers) as response:
            assert response.status == 204
