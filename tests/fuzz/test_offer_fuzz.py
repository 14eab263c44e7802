"""Fuzzing the offer path: mutated real offers, from the parser to HTTP.

Pins down, for any mutation of a corpus offer (`mutations.offers()`):
- `validate_offer` returns a shape or raises `InvalidSdp` / `NoAudioInOffer`, nothing
  else;
- a validated offer, its candidates through the ICE policy, is answered by a real
  `RTCPeerConnection` or refused with `InvalidSdp`, and the connection closes;
- `POST /calls` and `POST /offer` answer 2xx or 4xx with a JSON error, never 5xx;
- every corpus offer (aiortc's, Chromium-, Firefox-, GStreamer- and WHIP-like) is
  answered, with audio.
No test leaks a task or a peer connection (the autouse leak check).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given, settings

from gateway.errors import InvalidSdp, NoAudioInOffer
from gateway.media_tracks import AgentAudioTrack
from gateway.rtc import ice, peer_connection
from gateway.rtc.ice_policy import CandidateBudget, IcePolicy
from tests.fuzz.edge import JSON, SDP, answered_or_refused
from tests.fuzz.mutations import corpus_offers, loopback_only, offers
from tests.support.fakes import FakeAgentConnector

#: The gateway under test: loopback ICE, no mDNS (its queries would leave the machine).
GATEWAY = {"ice_mdns_candidates": False, "max_pending_calls_per_source": 1000}
POLICY = IcePolicy.from_settings(
    max_candidates=16, allowed_networks=(), own_addresses=("127.0.0.1",), allow_mdns=False
)
#: Parsing only: ten times the examples of the tests that negotiate.
PARSER_EXAMPLES = settings(max_examples=10 * settings().max_examples)


@PARSER_EXAMPLES
@given(offer=offers())
def test_validation_raises_only_the_clients_errors(offer: str) -> None:
    message = ""
    try:
        peer_connection.validate_offer(offer)
    except (InvalidSdp, NoAudioInOffer) as exc:
        message = exc.message
    assert "v=0" not in message  # no SDP echoed back


@given(offer=offers())
async def test_a_real_peer_connection_answers_or_refuses(offer: str) -> None:
    try:
        peer_connection.validate_offer(offer)
    except (InvalidSdp, NoAudioInOffer):
        return
    pc = peer_connection.new_peer_connection(ice.rtc_configuration([]))
    try:
        filtered = CandidateBudget(POLICY).filter_sdp(offer)
        answer = await peer_connection.negotiate(pc, filtered, AgentAudioTrack())
        assert answer.startswith("v=0")
        assert f"a=max-message-size:{peer_connection.MAX_MESSAGE_BYTES}" in answer or (
            "m=application" not in answer
        )
    except InvalidSdp:
        pass
    finally:
        await peer_connection.close_quietly(pc)


@given(offer=offers())
async def test_the_http_edge_never_answers_5xx(offer: str, fuzz_gateway: Any) -> None:
    client: TestClient[Any, Any] = fuzz_gateway
    await answered_or_refused(client, "/calls", offer.encode("utf-8", "surrogatepass"), SDP)
    body = json.dumps({"sdp": offer, "type": "offer"})
    await answered_or_refused(client, "/offer", body, JSON)


@pytest.fixture
async def fuzz_gateway(start_gateway: Callable[..., Any]) -> Any:
    return await start_gateway(FakeAgentConnector(), **GATEWAY)


@pytest.mark.parametrize("name", sorted(corpus_offers()))
async def test_every_corpus_offer_is_answered(name: str, fuzz_gateway: Any) -> None:
    client: TestClient[Any, Any] = fuzz_gateway
    offer = loopback_only(corpus_offers()[name])
    async with client.post("/calls", data=offer, headers=SDP) as response:
        answer = await response.text()
        assert response.status == 201, answer
        location = response.headers["Location"]
    assert "m=audio" in answer
    async with client.delete(location) as hung_up:
        assert hung_up.status == 204
