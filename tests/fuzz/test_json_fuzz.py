"""Fuzzing `POST /offer`: any JSON, and bodies that are not JSON at all.

Pins down: for JSON of any shape (objects with or without the expected keys, any
values) and for arbitrary text, the answer is 2xx or a 4xx with a JSON error, never
a 5xx; the listed hostile bodies (`mutations.HOSTILE_JSON`: deep nesting, NaN, lone
surrogates, duplicate keys, ...) likewise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.mutations import HOSTILE_JSON, offers
from tests.support.fakes import FakeAgentConnector

JSON_HEADERS = {"Content-Type": "application/json"}
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_FIELDS = {
    "sdp": _VALUES | offers(),
    "type": st.sampled_from(["offer", "answer", "OFFER", ""]) | _VALUES,
    "session_id": st.from_regex(r"[A-Za-z0-9_.:-]{0,130}", fullmatch=True) | _VALUES,
    "user_id": st.text(max_size=140) | _VALUES,
    "mode": st.sampled_from(["audio", "text", "video"]) | _VALUES,
}
BODIES = (
    st.fixed_dictionaries({}, optional=_FIELDS).map(json.dumps)
    | _VALUES.map(json.dumps)
    | st.text(max_size=200)
)


@pytest.fixture
async def client(start_gateway: Callable[..., Any]) -> TestClient[Any, Any]:
    gateway: TestClient[Any, Any] = await start_gateway(
        FakeAgentConnector(), ice_mdns_candidates=False, max_pending_calls_per_source=1000
    )
    return gateway


async def _post(client: TestClient[Any, Any], body: str) -> None:
    data = body.encode("utf-8", "surrogatepass")
    async with client.post("/offer", data=data, headers=JSON_HEADERS) as response:
        answer = await response.read()
        assert response.status < 500, answer[:200]
        if response.status >= 400:
            assert "error" in json.loads(answer)
            return
        call_id = json.loads(answer)["call_id"]
    async with client.delete(f"/calls/{call_id}") as hung_up:
        assert hung_up.status == 204


@given(body=BODIES)
async def test_any_json_is_answered_or_refused(body: str, client: TestClient[Any, Any]) -> None:
    await _post(client, body)


@pytest.mark.parametrize("index", range(len(HOSTILE_JSON)))
async def test_hostile_json_is_refused(index: int, client: TestClient[Any, Any]) -> None:
    await _post(client, HOSTILE_JSON[index])
