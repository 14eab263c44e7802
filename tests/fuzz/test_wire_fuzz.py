"""Fuzzing the wire formats: the seed's WebSocket frames and data-channel messages.

Pins down: `seed_websocket.parse_client_frame`, `seed_websocket.parse_params` and
`data_channel.parse_client_message` return a value or raise a `GatewayError` with a
4xx status (the caller's mistake), for any text or bytes and for JSON of any shape
around the fields they expect; nothing else escapes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.wire import data_channel, seed_websocket
from tests.fuzz.mutations import json_values

#: Pure parsing: ten times the examples of the tests that negotiate.
CHEAP = settings(max_examples=10 * settings().max_examples)
_VALUES = json_values(max_leaves=10)
_BASE64 = st.binary(max_size=600).map(lambda b: base64.b64encode(b).decode())
SEED_FRAMES = (
    st.fixed_dictionaries(
        {},
        optional={
            "mime_type": st.sampled_from(
                ["text/plain", "audio/pcm", "audio/pcm;rate=16000", "image/png", ""]
            )
            | _VALUES,
            "data": _BASE64 | st.text(max_size=4100) | _VALUES,
        },
    ).map(json.dumps)
    | _VALUES.map(json.dumps)
    | st.text(max_size=300)
)
DATA_CHANNEL_MESSAGES = (
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["text", "TEXT", "session", ""]) | _VALUES,
            "text": st.text(max_size=4100) | _VALUES,
        },
    ).map(json.dumps)
    | _VALUES.map(json.dumps)
    | st.text(max_size=300)
    | st.binary(max_size=300)
)


def _only_client_errors(parse: Callable[[], Any]) -> None:
    status = 200
    try:
        parse()
    except GatewayError as exc:
        status = exc.http_status
    assert 200 <= status < 500


@CHEAP
@given(raw=SEED_FRAMES)
def test_seed_frames_parse_or_are_the_clients_mistake(raw: str) -> None:
    _only_client_errors(lambda: seed_websocket.parse_client_frame(raw))


@CHEAP
@given(
    user_id=st.text(max_size=140),
    query=st.dictionaries(
        st.sampled_from(["is_audio", "events", "session_id", "x"]), st.text(max_size=140)
    ),
)
def test_seed_socket_params_parse_or_are_the_clients_mistake(
    user_id: str, query: dict[str, str]
) -> None:
    _only_client_errors(lambda: seed_websocket.parse_params(user_id, query))


@CHEAP
@given(raw=DATA_CHANNEL_MESSAGES)
def test_data_channel_messages_parse_or_are_the_clients_mistake(raw: str | bytes) -> None:
    _only_client_errors(lambda: data_channel.parse_client_message(raw))


def test_an_oversized_data_channel_message_is_refused_before_parsing() -> None:
    raw = json.dumps({"type": "text", "text": "x" * 20_000})
    _only_client_errors(lambda: data_channel.parse_client_message(raw))
