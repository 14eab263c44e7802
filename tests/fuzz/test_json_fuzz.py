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

from tests.fuzz.edge import JSON, answered_or_refused
from tests.fuzz.mutations import HOSTILE_JSON, json_values, offers
from tests.support.fakes import FakeAgentConnector

_VALUES = json_values()
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


@given(body=BODIES)
async def test_any_json_is_answered_or_refused(body: str, client: TestClient[Any, Any]) -> None:
    await answered_or_refused(client, "/offer", body.encode("utf-8", "surrogatepass"), JSON)


@pytest.mark.parametrize("index", range(len(HOSTILE_JSON)))
async def test_hostile_json_is_refused(index: int, client: TestClient[Any, Any]) -> None:
    await answered_or_refused(client, "/offer", HOSTILE_JSON[index].encode(), JSON)
