"""The seam between the call (media, data channel) and the agent.

An agent knows audio and text, not transports: it takes 16 kHz PCM and text in and
produces the events below. `agent_bridge.py` implements it with ADK; tests may
implement it with fakes. Imports nothing from aiortc, aiohttp or ADK.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


class Modality(enum.Enum):
    """How the agent answers for the whole call (one per live session)."""

    AUDIO = "audio"
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class AgentAudio:
    """A chunk of agent speech: 24 kHz mono s16le PCM (`AGENT_OUTPUT_RATE_HZ`)."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class Transcript:
    """Speech recognized on either side; partial until `final`."""

    role: Literal["user", "agent"]
    text: str
    final: bool


@dataclass(frozen=True, slots=True)
class AgentText:
    """Agent text in TEXT modality: partial chunks, then the whole text with `final`."""

    text: str
    final: bool


@dataclass(frozen=True, slots=True)
class TurnComplete:
    """The agent finished its turn."""


@dataclass(frozen=True, slots=True)
class AgentInterrupted:
    """The caller barged in: whatever agent audio is queued must be dropped."""


@dataclass(frozen=True, slots=True)
class AgentError:
    """The agent failed; `code` is a stable wire code, `message` safe to show."""

    code: str
    message: str
    fatal: bool = True


AgentEvent = AgentAudio | Transcript | AgentText | TurnComplete | AgentInterrupted | AgentError


class AgentSession(Protocol):
    """One live conversation turn-stream, for the life of one call."""

    @property
    def session_id(self) -> str:
        """The conversation's id; a later call may continue it."""
        ...

    def send_audio(self, pcm: bytes) -> None:
        """Queue caller audio: 16 kHz mono s16le (`AGENT_INPUT_RATE_HZ`). Never blocks."""
        ...

    def send_text(self, text: str) -> None:
        """Queue a caller text turn. Never blocks."""
        ...

    def events(self) -> AsyncIterator[AgentEvent]:
        """Agent events until the session ends (then the iterator stops)."""
        ...


class AgentConnector(Protocol):
    """Opens agent sessions; one per call."""

    def open_session(
        self, *, user_id: str, session_id: str | None, modality: Modality, call_id: str = ""
    ) -> AbstractAsyncContextManager[AgentSession]:
        """Open (or continue, with `session_id`) a conversation for the call (or
        WebSocket) `call_id`, which names it in logs.

        Raises `gateway.errors.UnknownSession` for a `session_id` that does not
        exist and `gateway.errors.AgentUnavailable` when the agent cannot start.
        Leaving the context ends the session and releases everything it holds.
        """
        ...


@runtime_checkable
class ConversationCreator(Protocol):
    """A connector that can start a conversation under an id the caller chose: ADK's
    bidi-demo names its sessions itself (`/ws/{user_id}/{session_id}`, created when
    missing). Conversations are per user, so the id only names one of `user_id`'s."""

    async def ensure_conversation(self, *, user_id: str, session_id: str) -> None:
        """Create `user_id`'s conversation `session_id` unless it exists (then
        `open_session` continues it). Raises `gateway.errors.AgentUnavailable` when
        the conversation store fails."""
        ...
