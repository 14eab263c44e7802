"""What the WebSocket transport needs from a wire protocol, and what the protocols carry.

`websocket_transport.py` serves any protocol that implements `SocketProtocol`: the
seed sample's (`seed_websocket`, `/ws/{user_id}`) and ADK's bidi-demo (`bidi_demo`,
`/ws/{user_id}/{session_id}`). A protocol validates the request's path and query,
turns client frames into `ClientText` / `ClientAudio`, and renders agent events and
errors as text frames (`FrameEncoder`); it does no I/O, and the transport does
everything else (auth, admission, limits, tasks, closing) the same way for both.
Imports only the standard library and the agent seam.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from gateway.agent_api import AgentEvent, Modality


@dataclass(frozen=True, slots=True)
class SocketParams:
    """What a WebSocket request asks for, validated."""

    user_id: str
    modality: Modality
    session_id: str | None
    #: The seed's `events=1` extension: the data channel's JSON events instead of its own.
    events: bool = False


@dataclass(frozen=True, slots=True)
class ClientText:
    """A typed turn."""

    text: str


@dataclass(frozen=True, slots=True)
class ClientAudio:
    """Caller audio: 16 kHz mono s16le PCM (`AGENT_INPUT_RATE_HZ`)."""

    pcm: bytes


ClientItem = ClientText | ClientAudio


class FrameEncoder(Protocol):
    """Server frames of one socket (an encoder may keep per-socket state)."""

    def greeting(self, *, socket_id: str, session_id: str, modality: Modality) -> str | None:
        """The frame sent once the agent session is open, if the protocol has one."""
        ...

    def encode(self, event: AgentEvent) -> str | None:
        """An agent event as a text frame, or None if the protocol does not carry it."""
        ...

    def error(self, code: str, message: str, *, fatal: bool) -> str:
        """An error (a refused frame, or why the socket ends) as a text frame."""
        ...

    def going_away(self, session_id: str, deadline_s: float) -> str:
        """The gateway drains: the socket closes in `deadline_s`; reconnect with
        `session_id` to continue (docs/websocket.md, docs/bidi-demo.md)."""
        ...


class SocketProtocol(Protocol):
    """One WebSocket wire protocol, as the transport uses it."""

    @property
    def name(self) -> str:
        """Names the protocol in logs."""
        ...

    @property
    def max_frame_bytes(self) -> int:
        """Frames past this close the socket (1009) unread."""
        ...

    @property
    def creates_sessions(self) -> bool:
        """Whether a `session_id` the caller names is created when it does not exist
        (the bidi-demo's get-or-create) rather than refused as unknown (the seed)."""
        ...

    def parse_request(self, path: Mapping[str, str], query: Mapping[str, str]) -> SocketParams:
        """The request's path parameters and query, validated (`BadRequest`)."""
        ...

    def parse_text(self, raw: str) -> ClientItem:
        """A client text frame (`InvalidMessage`, `UnsupportedMediaType`)."""
        ...

    def parse_binary(self, raw: bytes) -> ClientItem:
        """A client binary frame (`InvalidMessage` where the protocol has none)."""
        ...

    def encoder(self, params: SocketParams) -> FrameEncoder:
        """A new encoder for one socket."""
        ...
