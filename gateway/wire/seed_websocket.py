"""The WebSocket wire protocol of ADK's "custom audio streaming" sample (the seed).

Pure parsing and encoding, no I/O: `websocket_transport.py` does the socket work.
Imports only the standard library and the project's agent events, errors and
data-channel protocol; nothing from aiohttp, aiortc or ADK.

Client to server, one JSON text frame each (docs/websocket.md):
    {"mime_type": "text/plain", "data": "<a typed turn>"}
    {"mime_type": "audio/pcm", "data": "<base64 16 kHz mono s16le>"}
Server to client:
    {"mime_type": "audio/pcm", "data": "<base64 24 kHz mono s16le>"}
    {"mime_type": "text/plain", "data": "<the next piece of the agent's words>"}
    {"turn_complete": true|false, "interrupted": true|false}
    {"type": "error", "code": ..., "message": ..., "fatal": ...}   (seed clients ignore it)
    {"type": "going_away", "session_id": ..., "deadline_s": ...}  (draining; ignored too)

With the `events=1` extension the text, transcript and turn messages are the
data channel's JSON events instead (docs/protocol.md), so one client handles both
transports; audio keeps the seed's shape. `SEED_PROTOCOL` is all of this as the
transport uses it (`socket_protocol.SocketProtocol`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from gateway.agent_api import (
    AgentAudio,
    AgentError,
    AgentEvent,
    AgentInterrupted,
    AgentText,
    Modality,
    Transcript,
    TurnComplete,
)
from gateway.errors import BadRequest, InvalidMessage, UnsupportedMediaType
from gateway.wire.data_channel import (
    ID_PATTERN,
    MAX_TEXT_CHARS,
    error_message,
    event_message,
    going_away_message,
    is_valid_id,
    session_message,
)
from gateway.wire.socket_protocol import ClientAudio as ClientAudio
from gateway.wire.socket_protocol import ClientItem as ClientItem
from gateway.wire.socket_protocol import ClientText as ClientText
from gateway.wire.socket_protocol import SocketParams as SocketParams

MIME_TEXT = "text/plain"
MIME_AUDIO = "audio/pcm"
#: One frame of caller audio; the seed's recorder sends ~8 ms (256 bytes) per frame.
MAX_AUDIO_FRAME_BYTES = 64 * 1024
#: Base64 plus the JSON around it stays well under this.
MAX_FRAME_BYTES = 128 * 1024

_FLAGS = {"true": True, "false": False, "1": True, "0": False}


def _flag(query: dict[str, str], name: str) -> bool:
    raw = query.get(name, "false").lower()
    if raw not in _FLAGS:
        raise BadRequest(f"{name} must be true or false")
    return _FLAGS[raw]


def parse_params(user_id: str, query: dict[str, str]) -> SocketParams:
    """Validate the path and query; raises `BadRequest` saying what is wrong."""
    if not is_valid_id(user_id):
        raise BadRequest(f"user_id must match {ID_PATTERN}")
    session_id = query.get("session_id") or None
    if session_id is not None and not is_valid_id(session_id):
        raise BadRequest(f"session_id must match {ID_PATTERN}")
    modality = Modality.AUDIO if _flag(query, "is_audio") else Modality.TEXT
    return SocketParams(user_id, modality, session_id, _flag(query, "events"))


def parse_client_frame(raw: str) -> ClientItem:
    """One client text frame; raises `InvalidMessage` or `UnsupportedMediaType`."""
    try:
        message = json.loads(raw)
    except ValueError:
        raise InvalidMessage("message is not JSON") from None
    if not isinstance(message, dict):
        raise InvalidMessage("message is not a JSON object")
    mime_type, data = message.get("mime_type"), message.get("data")
    if not isinstance(mime_type, str):
        raise InvalidMessage("mime_type: a string is required")
    if not isinstance(data, str):
        raise InvalidMessage("data: a string is required")
    if mime_type == MIME_TEXT:
        if not 1 <= len(data) <= MAX_TEXT_CHARS:
            raise InvalidMessage(f"data: text must be 1-{MAX_TEXT_CHARS} characters")
        return ClientText(data)
    if mime_type.split(";")[0].strip() == MIME_AUDIO:
        return ClientAudio(_decode_audio(data))
    raise UnsupportedMediaType(f"mime_type {mime_type[:40]!r} is not supported")


def _decode_audio(data: str) -> bytes:
    if len(data) > MAX_AUDIO_FRAME_BYTES * 4 // 3 + 4:
        raise InvalidMessage(f"data: audio frame larger than {MAX_AUDIO_FRAME_BYTES} bytes")
    try:
        pcm = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMessage("data: audio is not valid base64") from None
    if len(pcm) % 2:
        raise InvalidMessage("data: 16-bit PCM needs an even number of bytes")
    return pcm


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def audio_frame(pcm: bytes) -> str:
    """Agent audio (24 kHz mono s16le) as the seed's audio message."""
    return _dump({"mime_type": MIME_AUDIO, "data": base64.b64encode(pcm).decode("ascii")})


class SeedEncoder:
    """Turns agent events into server frames for one socket.

    The seed appends every `text/plain` message to the current answer, so agent
    words go out as increments: text chunks as they come, and of a transcript
    (a partial replaced by the next) only what extends the text already sent.
    User transcripts have no seed message and are sent only with `events`.
    """

    def __init__(self, *, events: bool) -> None:
        self._events = events
        self._sent = ""

    def greeting(self, *, socket_id: str, session_id: str, modality: Modality) -> str | None:
        """With `events`, the data channel's `session` message; the seed has none."""
        return session_message(socket_id, session_id, modality.value) if self._events else None

    def error(self, code: str, message: str, *, fatal: bool) -> str:
        return error_message(code, message, fatal=fatal)

    def going_away(self, session_id: str, deadline_s: float) -> str:
        """The data channel's `going_away`, with or without `events`."""
        return going_away_message(session_id, deadline_s)

    def encode(self, event: AgentEvent) -> str | None:
        if isinstance(event, AgentAudio):
            return audio_frame(event.pcm)
        if self._events:
            return event_message(event)
        match event:
            case AgentText(text=text, final=False):
                return self._words(self._sent + text)
            case AgentText(text=text) | Transcript(role="agent", text=text):
                return self._words(text)
            case TurnComplete():
                self._sent = ""
                return _dump({"turn_complete": True, "interrupted": False})
            case AgentInterrupted():
                self._sent = ""
                return _dump({"turn_complete": False, "interrupted": True})
            case AgentError(code=code, message=message, fatal=fatal):
                return error_message(code, message, fatal=fatal)
        return None

    def _words(self, said: str) -> str | None:
        """The part of `said` (all words so far this turn) not sent yet."""
        new = said[len(self._sent) :] if said.startswith(self._sent) else said
        self._sent = said if said.startswith(self._sent) else self._sent + said
        return _dump({"mime_type": MIME_TEXT, "data": new}) if new else None


class SeedProtocol:
    """The seed's protocol for the WebSocket transport (`SocketProtocol`)."""

    name = "seed"
    max_frame_bytes = MAX_FRAME_BYTES
    #: An unknown `session_id` is refused (4404), as on `POST /calls`.
    creates_sessions = False

    def parse_request(self, path: Mapping[str, str], query: Mapping[str, str]) -> SocketParams:
        return parse_params(path["user_id"], dict(query))

    def parse_text(self, raw: str) -> ClientItem:
        return parse_client_frame(raw)

    def parse_binary(self, raw: bytes) -> ClientItem:
        raise InvalidMessage("binary frames are not part of the protocol")

    def encoder(self, params: SocketParams) -> SeedEncoder:
        return SeedEncoder(events=params.events)


SEED_PROTOCOL = SeedProtocol()
