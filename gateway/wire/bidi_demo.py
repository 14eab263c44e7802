"""The WebSocket protocol of ADK's streaming sample "bidi-demo": `/ws/{user_id}/{session_id}`.

Pure parsing and encoding, no I/O: `websocket_transport.py` does the socket work.
Imports the standard library, pydantic (through the data channel's `TextMessage`),
the agent seam, the errors and the named audio formats; nothing from aiohttp or ADK.
Written from the published shapes, not from the sample's code (docs/bidi-demo.md):

- [P1] https://google.github.io/adk-docs/streaming/dev-guide/part1/ ("FastAPI
  Application Example", "Get or Create Session"): route `/ws/{user_id}/{session_id}`;
  the session is fetched and created with the caller's id if missing; every event
  goes out as `event.model_dump_json(exclude_none=True, by_alias=True)`.
- [P3] https://google.github.io/adk-docs/streaming/dev-guide/part3/ ("The Event
  Class", "Event Authorship", "Error Events"): `content`, `partial`, `turnComplete`,
  `interrupted`, `inputTranscription`/`outputTranscription`, `errorCode`/`errorMessage`;
  transcriptions of the user are authored "user", everything else by the agent.
- [P5] https://google.github.io/adk-docs/streaming/dev-guide/part5/ ("Sending Audio
  Input", "Receiving Audio Output", images): caller audio as binary frames of 16 kHz
  mono s16 PCM; agent audio as `inlineData` `audio/pcm;rate=24000`, base64url (the
  client converts it); images as `{"type": "image", "data": <base64>, "mimeType"}`.
- [DEMO] google/adk-samples python/agents/bidi-demo, app/main.py and
  app/static/js/app.js as the guide links them (Part 1 pins
  4274c70ae3f4c68595f543ee504474747ea9f0da; read in forks of the sample, whose
  shapes agree with the guide's excerpts): text turns `{"type": "text", "text": ...}`;
  the query flags `proactivity` / `affective_dialog`; what the client reads.

Field names are ADK's `Event` / `LlmResponse` (google/adk/events/event.py,
models/llm_response.py: camelCase aliases); tests/test_bidi_demo_protocol.py checks
every frame against `google.adk.events.Event` and against a real Event dumped the
demo's way.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

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
from gateway.audio.formats import AGENT_OUTPUT_MIME, SAMPLE_BYTES
from gateway.errors import BadRequest, InvalidMessage, UnsupportedMediaType
from gateway.wire.data_channel import ID_PATTERN, TextMessage, going_away_fields, is_valid_id
from gateway.wire.socket_protocol import ClientAudio, ClientItem, ClientText, SocketParams

MSG_TEXT = "text"
MSG_IMAGE = "image"
#: [P3] the author of events about the caller's own speech.
AUTHOR_USER = "user"
#: ADK authors model events with the agent's name; the agent seam does not carry it.
AUTHOR_AGENT = "agent"
#: One binary frame of caller audio: 2 s at 16 kHz. The demo's recorder sends one
#: AudioWorklet quantum per frame, 128 samples (256 bytes) [P5].
MAX_AUDIO_FRAME_BYTES = 64 * 1024
#: Largest frame read. The demo's camera sends one 768x768 JPEG at quality 0.85 as
#: base64 JSON [P5] (~50-200 KB, +33 % for base64): such a frame must reach the
#: parser and get a clear `unsupported_media_type`, not a 1009 close (after which the
#: demo's client reconnects every 5 s).
MAX_FRAME_BYTES = 512 * 1024

_MODALITIES = {m.value: m for m in Modality}


def parse_params(user_id: str, session_id: str, query: Mapping[str, str]) -> SocketParams:
    """Validate the path and query. `modality=audio|text` is the gateway's extension
    (default audio, as the demo on a native-audio model); the demo's `proactivity`
    and `affective_dialog` flags are accepted and ignored (the operator's
    `GATEWAY_GEMINI_*` settings decide)."""
    if not is_valid_id(user_id):
        raise BadRequest(f"user_id must match {ID_PATTERN}")
    if not is_valid_id(session_id):
        raise BadRequest(f"session_id must match {ID_PATTERN}")
    modality = _MODALITIES.get(query.get("modality", Modality.AUDIO.value).lower())
    if modality is None:
        raise BadRequest("modality must be audio or text")
    return SocketParams(user_id, modality, session_id)


def parse_text_frame(raw: str) -> ClientText:
    """One client text frame: a typed turn; an image is refused (`UnsupportedMediaType`:
    the agent seam takes audio and text only), anything else is `InvalidMessage`."""
    try:
        message = json.loads(raw)
    except ValueError:
        raise InvalidMessage("message is not JSON") from None
    if not isinstance(message, dict):
        raise InvalidMessage("message is not a JSON object")
    kind = message.get("type")
    if kind == MSG_IMAGE:
        raise UnsupportedMediaType("images are not supported: the agent takes audio and text")
    if kind != MSG_TEXT:
        raise InvalidMessage(f"unknown message type {str(kind)[:40]!r}")
    try:
        return ClientText(TextMessage.model_validate(message).text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise InvalidMessage(f"{where}: {first['msg']}") from None


def parse_binary_frame(raw: bytes) -> ClientAudio:
    """One client binary frame: 16 kHz mono s16le PCM [P5]."""
    if not raw:
        raise InvalidMessage("an audio frame needs at least one sample")
    if len(raw) > MAX_AUDIO_FRAME_BYTES:
        raise InvalidMessage(f"audio frame larger than {MAX_AUDIO_FRAME_BYTES} bytes")
    if len(raw) % SAMPLE_BYTES:
        raise InvalidMessage("16-bit PCM needs an even number of bytes")
    return ClientAudio(bytes(raw))


def _new_event_id() -> str:
    return str(uuid.uuid4())


class BidiDemoEncoder:
    """Agent events as ADK `Event` JSON, as `model_dump_json(exclude_none=True,
    by_alias=True)` writes it [P1] for the event ADK's `run_live` yields for the same
    thing. Every frame carries `id` (new per frame), `invocationId` (one per socket,
    as ADK's one per `run_live`), `author` and `timestamp` (seconds)."""

    def __init__(
        self,
        *,
        author: str = AUTHOR_AGENT,
        invocation_id: str | None = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = _new_event_id,
    ) -> None:
        self.author = author
        self.invocation_id = invocation_id or f"e-{uuid.uuid4()}"
        self._clock = clock
        self._new_id = new_id

    def greeting(self, *, socket_id: str, session_id: str, modality: Modality) -> str | None:
        return None  # the demo's server sends nothing until the agent speaks [DEMO]

    def encode(self, event: AgentEvent) -> str | None:
        match event:
            case AgentAudio(pcm=pcm):
                data = base64.urlsafe_b64encode(pcm).decode("ascii")  # as pydantic dumps bytes
                return self._event(content=_model_content({"inlineData": _blob(data)}))
            case AgentText(text=text, final=final):
                return self._event(content=_model_content({"text": text}), partial=not final)
            case Transcript(role="user", text=text, final=final):
                transcription = {"text": text, "finished": final}
                return self._event(
                    author=AUTHOR_USER, inputTranscription=transcription, partial=not final
                )
            case Transcript(text=text, final=final):
                transcription = {"text": text, "finished": final}
                return self._event(outputTranscription=transcription, partial=not final)
            case TurnComplete():
                return self._event(turnComplete=True)
            case AgentInterrupted():
                return self._event(interrupted=True)
            case AgentError(code=code, message=message, fatal=fatal):
                return self.error(code, message, fatal=fatal)
        return None

    def error(self, code: str, message: str, *, fatal: bool) -> str:
        """[P3]'s error event: `errorCode` is the gateway's wire code (`invalid_message`,
        `rate_limited`, `at_capacity`...); `customMetadata.fatal` says the socket ends."""
        return self._event(errorCode=code, errorMessage=message, customMetadata={"fatal": fatal})

    def going_away(self, session_id: str, deadline_s: float) -> str:
        """The gateway drains: an event with no content whose `customMetadata` is the
        data channel's `going_away` (ADK's `Event.custom_metadata`, free-form)."""
        return self._event(customMetadata=going_away_fields(session_id, deadline_s))

    def _event(self, *, author: str | None = None, **fields: Any) -> str:
        event = {
            **fields,
            "invocationId": self.invocation_id,
            "author": author or self.author,
            "id": self._new_id(),
            "timestamp": self._clock(),
        }
        return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def _model_content(part: dict[str, Any]) -> dict[str, Any]:
    return {"parts": [part], "role": "model"}


def _blob(data: str) -> dict[str, str]:
    return {"data": data, "mimeType": AGENT_OUTPUT_MIME}


class BidiDemoProtocol:
    """The bidi-demo's protocol for the WebSocket transport (`SocketProtocol`)."""

    name = "bidi-demo"
    max_frame_bytes = MAX_FRAME_BYTES
    #: [P1] get-or-create: the caller names its conversations. Sessions are stored per
    #: user (ADK keys them by app, user and id), so a name only ever reaches the
    #: caller's own conversations.
    creates_sessions = True

    def parse_request(self, path: Mapping[str, str], query: Mapping[str, str]) -> SocketParams:
        return parse_params(path["user_id"], path["session_id"], query)

    def parse_text(self, raw: str) -> ClientItem:
        return parse_text_frame(raw)

    def parse_binary(self, raw: bytes) -> ClientItem:
        return parse_binary_frame(raw)

    def encoder(self, params: SocketParams) -> BidiDemoEncoder:
        return BidiDemoEncoder()


BIDI_DEMO_PROTOCOL = BidiDemoProtocol()
