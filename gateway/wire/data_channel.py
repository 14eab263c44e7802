"""The data-channel protocol (docs/protocol.md): message names, parsing, building.

Client messages are validated here, once, at the edge. Imports pydantic and the
project's agent events and errors, nothing from the media stack or ADK.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.agent_api import (
    AgentError,
    AgentEvent,
    AgentInterrupted,
    AgentText,
    Transcript,
    TurnComplete,
)
from gateway.errors import InvalidMessage

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 16 * 1024
MAX_TEXT_CHARS = 4000
#: Session and user ids, wherever a client names one (query strings, JSON, the
#: seed's WebSocket path): what is safe in a URL, a log line and a database key.
ID_PATTERN = r"[A-Za-z0-9_.:-]{1,128}"
_ID = re.compile(ID_PATTERN)


def is_valid_id(value: str) -> bool:
    """Whether `value` is a whole id (no trailing newline, unlike `re.match` with `$`)."""
    return _ID.fullmatch(value) is not None


# Message types, defined once (mirrored in client/protocol.js).
MSG_TEXT = "text"
MSG_SESSION = "session"
MSG_TRANSCRIPT = "transcript"
MSG_TURN_COMPLETE = "turn_complete"
MSG_INTERRUPTED = "interrupted"
MSG_ERROR = "error"
MSG_GOING_AWAY = "going_away"


class TextMessage(BaseModel):
    """A typed turn from the caller."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["text"]
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


ClientMessage = TextMessage


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Parse one data-channel message; raises `InvalidMessage` saying what is wrong."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidMessage("message is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidMessage("message is not a JSON object")
    kind = data.get("type")
    if kind != MSG_TEXT:
        raise InvalidMessage(f"unknown message type {str(kind)[:40]!r}")
    try:
        return TextMessage.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise InvalidMessage(f"{where}: {first['msg']}") from None


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def session_message(call_id: str, session_id: str, mode: str) -> str:
    return _dump(
        {
            "type": MSG_SESSION,
            "version": PROTOCOL_VERSION,
            "call_id": call_id,
            "session_id": session_id,
            "mode": mode,
        }
    )


def going_away_message(session_id: str, deadline_s: float) -> str:
    """The gateway drains: this session's call ends in `deadline_s` seconds; the
    caller moves by offering again with `session_id` (docs/protocol.md)."""
    return _dump(going_away_fields(session_id, deadline_s))


def going_away_fields(session_id: str, deadline_s: float) -> dict[str, Any]:
    """`going_away` as a JSON object (the WebSocket protocols carry it too)."""
    return {"type": MSG_GOING_AWAY, "session_id": session_id, "deadline_s": round(deadline_s, 1)}


def error_message(code: str, message: str, *, fatal: bool = False) -> str:
    return _dump({"type": MSG_ERROR, "code": code, "message": message, "fatal": fatal})


def event_message(event: AgentEvent) -> str | None:
    """The wire form of an agent event, or None for events that are not sent (audio)."""
    match event:
        case Transcript(role=role, text=text, final=final):
            return _dump({"type": MSG_TRANSCRIPT, "role": role, "text": text, "final": final})
        case AgentText(text=text, final=final):
            return _dump({"type": MSG_TEXT, "text": text, "final": final})
        case TurnComplete():
            return _dump({"type": MSG_TURN_COMPLETE})
        case AgentInterrupted():
            return _dump({"type": MSG_INTERRUPTED})
        case AgentError(code=code, message=message, fatal=fatal):
            return error_message(code, message, fatal=fatal)
    return None
