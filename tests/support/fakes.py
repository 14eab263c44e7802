"""Fakes at our own seam (`gateway.agent_api`): an agent the test drives by hand.

`FakeAgentConnector` implements `AgentConnector` (and `ConversationCreator`: a
conversation named by the caller is created when missing); its sessions record what
the caller sent (16 kHz PCM, text) and emit whatever events the test pushes. With
`echo_text=True` a text turn is answered with a transcript, a tone and
`turn_complete`, like a real agent would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.agent_api import (
    AgentAudio,
    AgentEvent,
    Modality,
    Transcript,
    TurnComplete,
)
from gateway.audio.formats import AGENT_OUTPUT_RATE_HZ
from gateway.audio.pcm import tone
from gateway.errors import UnknownSession


def agent_tone(duration_s: float, freq_hz: float = 440.0, amplitude: int = 8000) -> bytes:
    return tone(duration_s, AGENT_OUTPUT_RATE_HZ, freq_hz, amplitude)


@dataclass
class FakeAgentSession:
    session_id: str
    modality: Modality
    user_id: str
    echo_text: bool = False
    audio: bytearray = field(default_factory=bytearray)
    audio_chunks: int = 0
    texts: list[str] = field(default_factory=list)
    closed: bool = False
    _events: asyncio.Queue[AgentEvent | None] = field(default_factory=asyncio.Queue)

    def send_audio(self, pcm: bytes) -> None:
        self.audio += pcm
        self.audio_chunks += 1

    def send_text(self, text: str) -> None:
        self.texts.append(text)
        if self.echo_text:
            self.emit(Transcript("agent", f"You said: {text}", True))
            self.emit(AgentAudio(agent_tone(0.5)))
            self.emit(TurnComplete())

    def emit(self, event: AgentEvent) -> None:
        self._events.put_nowait(event)

    def end(self) -> None:
        """The agent ends the session on its own."""
        self._events.put_nowait(None)

    async def events(self) -> AsyncIterator[AgentEvent]:
        while (event := await self._events.get()) is not None:
            yield event


@dataclass
class FakeAgentConnector:
    echo_text: bool = False
    known_sessions: set[str] = field(default_factory=set)
    sessions: list[FakeAgentSession] = field(default_factory=list)
    session_opened: asyncio.Event = field(default_factory=asyncio.Event)

    @contextlib.asynccontextmanager
    async def open_session(
        self, *, user_id: str, session_id: str | None, modality: Modality, call_id: str = ""
    ) -> AsyncIterator[FakeAgentSession]:
        if session_id is not None and session_id not in self.known_sessions:
            raise UnknownSession("no conversation with that session_id")
        session_id = session_id or f"s{len(self.sessions) + 1}"
        self.known_sessions.add(session_id)
        session = FakeAgentSession(session_id, modality, user_id, echo_text=self.echo_text)
        self.sessions.append(session)
        self.session_opened.set()
        try:
            yield session
        finally:
            session.closed = True

    async def ensure_conversation(self, *, user_id: str, session_id: str) -> None:
        self.known_sessions.add(session_id)

    @property
    def last(self) -> FakeAgentSession:
        return self.sessions[-1]
