"""Small pure pieces: the data-channel protocol, settings, ICE configuration.

Pins down:
- client messages are validated once, with a reason; server messages match docs;
- settings come from GATEWAY_* environment and overrides, with clear errors;
- ICE servers come only from configuration, none by default.
"""

from __future__ import annotations

import json

import pytest

from gateway.agent_api import AgentError, AgentInterrupted, AgentText, Transcript, TurnComplete
from gateway.config import ConfigError, load_settings
from gateway.errors import InvalidMessage
from gateway.rtc import ice
from gateway.wire import data_channel


def test_client_text_message() -> None:
    assert data_channel.parse_client_message('{"type": "text", "text": "hi", "x": 1}').text == "hi"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("nope", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"type": "video"}', "unknown message type"),
        ('{"text": "hi"}', "unknown message type"),
        ('{"type": "text"}', "text"),
        ('{"type": "text", "text": ""}', "text"),
        ('{"type": "text", "text": "' + "x" * 4001 + '"}', "text"),
        ('{"type": "text", "text": "' + "x" * 20000 + '"}', "larger than"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_bad_client_messages(raw: str | bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        data_channel.parse_client_message(raw)


def test_server_messages_match_the_documented_shapes() -> None:
    def wire(event: object) -> object:
        message = data_channel.event_message(event)  # type: ignore[arg-type]
        return json.loads(message) if message else None

    assert wire(Transcript("user", "hi", False)) == {
        "type": "transcript",
        "role": "user",
        "text": "hi",
        "final": False,
    }
    assert wire(AgentText("a", final=True)) == {"type": "text", "text": "a", "final": True}
    assert wire(TurnComplete()) == {"type": "turn_complete"}
    assert wire(AgentInterrupted()) == {"type": "interrupted"}
    assert wire(AgentError("agent_error", "boom")) == {
        "type": "error",
        "code": "agent_error",
        "message": "boom",
        "fatal": True,
    }
    assert json.loads(data_channel.session_message("c", "s", "audio")) == {
        "type": "session",
        "version": 1,
        "call_id": "c",
        "session_id": "s",
        "mode": "audio",
    }


def test_settings_from_environment_and_overrides() -> None:
    env = {
        "GATEWAY_PORT": "9000",
        "GATEWAY_ICE_SERVERS": "stun:a:1, turn:u:p@b:2",
        "GATEWAY_LOG_LEVEL": "debug",
    }
    settings = load_settings({"max_calls": 7}, environ=env)
    assert settings.port == 9000
    assert settings.ice_servers == ("stun:a:1", "turn:u:p@b:2")
    assert settings.max_calls == 7
    assert settings.log_level == "DEBUG"
    with pytest.raises(ConfigError, match="port"):
        load_settings(environ={"GATEWAY_PORT": "http"})
    with pytest.raises(ConfigError, match="max_calls"):
        load_settings({"max_calls": 0}, environ={})


def test_ice_servers_only_from_configuration() -> None:
    assert ice.rtc_configuration([]).iceServers == []
    servers = ice.rtc_configuration(["stun:stun.example:3478", "turn:u:p@turn.example:3478"])
    assert servers.iceServers is not None
    assert [s.urls for s in servers.iceServers] == [
        "stun:stun.example:3478",
        "turn:turn.example:3478",
    ]
    assert (servers.iceServers[1].username, servers.iceServers[1].credential) == ("u", "p")
