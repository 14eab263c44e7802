"""Fuzzing trickle ICE: `PATCH /calls/{id}` with mutated sdpfrags.

Pins down, for one call that never connects and any mutation of a corpus sdpfrag
(`mutations.sdpfrags()`): 204 or a 4xx with a JSON error, never a 5xx; the call
survives every one (a last valid `PATCH` is still taken) and hangs up cleanly.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given

from tests.fuzz.edge import SDP, SDPFRAG
from tests.fuzz.mutations import corpus_sdpfrags, loopback_only, sdpfrags
from tests.support.fakes import FakeAgentConnector
from tests.support.peers import HeadlessCaller


@pytest.fixture
async def pending_call(
    start_gateway: Callable[..., Any],
) -> AsyncIterator[tuple[TestClient[Any, Any], str]]:
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
        yield client, location
        async with client.delete(location) as hung_up:
            assert hung_up.status == 204
    finally:
        await caller.close()


@given(sdpfrag=sdpfrags())
async def test_a_mutated_sdpfrag_is_taken_or_refused(
    sdpfrag: str, pending_call: tuple[TestClient[Any, Any], str]
) -> None:
    client, location = pending_call
    data = sdpfrag.encode("utf-8", "surrogatepass")
    async with client.patch(location, data=data, headers=SDPFRAG) as response:
        body = await response.read()
        assert response.status < 500, body[:200]
        if response.status >= 400:
            assert "error" in json.loads(body)
        else:
            assert response.status == 204


async def test_the_corpus_sdpfrags_are_taken(
    pending_call: tuple[TestClient[Any, Any], str],
) -> None:
    client, location = pending_call
    for sdpfrag in corpus_sdpfrags().values():
        async with client.patch(location, data=loopback_only(sdpfrag), headers=SDPFRAG) as response:
            assert response.status == 204
