"""The bridge through ADK's own event flow: real `Runner.run_live`, scripted live model.

Pins down:
- a text turn comes back as an agent transcript, 24 kHz audio and `turn_complete`;
- caller speech (16 kHz PCM) is endpointed by the model: a final user transcript,
  then an answer;
- speech during an answer yields `AgentInterrupted` and the answer's audio stops;
- TEXT modality streams partial text, then the whole text;
- an unknown `session_id` is refused; a known one is continued (its events persist);
- a conversation named by the caller (the bidi-demo's path) is created once, per user,
  in the SQLite store too, even by sockets racing to create it; a failing store is
  `AgentUnavailable`;
- leaving the session context ends `run_live` and leaves no task behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google.adk.agents import Agent
from google.adk.sessions import InMemorySessionService, Session

import gateway.models.scripted  # noqa: F401  (registers scripted-live)
from gateway.adk.sessions import build_session_service, check_session_service, close_session_service
from gateway.agent_api import (
    AgentAudio,
    AgentEvent,
    AgentInterrupted,
    AgentText,
    Modality,
    Transcript,
    TurnComplete,
)
from gateway.agent_bridge import AdkAgentConnector, AdkAgentSession
from gateway.audio.formats import AGENT_INPUT_RATE_HZ, AGENT_OUTPUT_RATE_HZ
from gateway.audio.pcm import tone
from gateway.errors import AgentUnavailable, UnknownSession


@pytest.fixture
async def connector() -> AsyncIterator[AdkAgentConnector]:
    agent = Agent(name="test_agent", model="scripted-live", instruction="Be brief.")
    bridge = AdkAgentConnector(agent, InMemorySessionService(), app_name="tests")
    yield bridge
    await bridge.close()


def speech_like(duration_s: float, amplitude: int = 5000) -> bytes:
    return tone(duration_s, AGENT_INPUT_RATE_HZ, 220, amplitude)


async def feed(session: AdkAgentSession, pcm: bytes, chunk: int = 640) -> None:
    for i in range(0, len(pcm), chunk):
        session.send_audio(pcm[i : i + chunk])
        await asyncio.sleep(0.002)


async def collect_until(
    events: AsyncIterator[AgentEvent], kind: type, timeout: float = 10.0
) -> list[AgentEvent]:
    seen: list[AgentEvent] = []
    async with asyncio.timeout(timeout):
        async for event in events:
            seen.append(event)
            if isinstance(event, kind):
                return seen
    raise AssertionError(f"events ended before {kind.__name__}: {seen}")


async def test_text_turn_gets_transcript_audio_and_turn_complete(
    connector: AdkAgentConnector,
) -> None:
    async with connector.open_session(
        user_id="u", session_id=None, modality=Modality.AUDIO
    ) as session:
        session.send_text("hello there")
        events = await collect_until(session.events(), TurnComplete)
    transcripts = [e for e in events if isinstance(e, Transcript)]
    assert Transcript("agent", "You said: hello there", True) in transcripts
    audio = b"".join(e.pcm for e in events if isinstance(e, AgentAudio))
    assert len(audio) / 2 / AGENT_OUTPUT_RATE_HZ == pytest.approx(1.5, abs=0.05)


async def test_speech_is_endpointed_and_answered(connector: AdkAgentConnector) -> None:
    async with connector.open_session(
        user_id="u", session_id=None, modality=Modality.AUDIO
    ) as session:
        await feed(session, speech_like(0.6) + bytes(2 * AGENT_INPUT_RATE_HZ // 2))
        events = await collect_until(session.events(), TurnComplete)
    user = [e for e in events if isinstance(e, Transcript) and e.role == "user"]
    assert user
    assert user[-1].final
    assert "speech 0.6 s" in user[-1].text
    assert any(isinstance(e, AgentAudio) for e in events)


async def test_barge_in_interrupts_the_answer(connector: AdkAgentConnector) -> None:
    async with connector.open_session(
        user_id="u", session_id=None, modality=Modality.AUDIO
    ) as session:
        session.send_text("a long answer please")
        events = session.events()
        await collect_until(events, AgentAudio)
        await feed(session, speech_like(0.2))
        seen = await collect_until(events, AgentInterrupted)
        audio_before = sum(len(e.pcm) for e in seen if isinstance(e, AgentAudio))
        assert audio_before < 6 * 2 * AGENT_OUTPUT_RATE_HZ  # the 6 s answer was cut short
        session.send_text("still there?")
        after = await collect_until(events, TurnComplete)
        assert Transcript("agent", "You said: still there?", True) in after


async def test_text_modality_streams_text(connector: AdkAgentConnector) -> None:
    async with connector.open_session(
        user_id="u", session_id=None, modality=Modality.TEXT
    ) as session:
        session.send_text("hi")
        events = await collect_until(session.events(), TurnComplete)
    texts = [e for e in events if isinstance(e, AgentText)]
    partial = [e.text for e in texts if not e.final]
    assert "".join(partial) == "You said: hi"
    assert texts[-1] == AgentText("You said: hi", final=True)
    assert not any(isinstance(e, AgentAudio) for e in events)


async def test_sessions_are_continued_or_refused(connector: AdkAgentConnector) -> None:
    with pytest.raises(UnknownSession):
        async with connector.open_session(user_id="u", session_id="nope", modality=Modality.AUDIO):
            pass
    async with connector.open_session(
        user_id="u", session_id=None, modality=Modality.AUDIO
    ) as first:
        first.send_text("remember me")
        await collect_until(first.events(), TurnComplete)
        session_id = first.session_id
    async with connector.open_session(
        user_id="u", session_id=session_id, modality=Modality.AUDIO
    ) as second:
        assert second.session_id == session_id
    stored = await connector.session_service.get_session(
        app_name="tests", user_id="u", session_id=session_id
    )
    assert stored is not None
    texts = [p.text for e in stored.events if e.content for p in e.content.parts or [] if p.text]
    assert "remember me" in texts


def typed_turns(session: Session | None) -> list[str]:
    assert session is not None
    return [p.text for e in session.events if e.content for p in e.content.parts or [] if p.text]


async def test_a_conversation_named_by_the_caller_is_created_once_per_user(
    tmp_path: Path,
) -> None:
    service = build_session_service(f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}")
    await check_session_service(service, app_name="tests")
    agent = Agent(name="named_agent", model="scripted-live", instruction="Be brief.")
    bridge = AdkAgentConnector(agent, service, app_name="tests")
    try:
        await asyncio.gather(
            *(bridge.ensure_conversation(user_id="alice", session_id="trip") for _ in range(3))
        )
        async with bridge.open_session(
            user_id="alice", session_id="trip", modality=Modality.AUDIO
        ) as session:
            assert session.session_id == "trip"
            session.send_text("my name is Ada")
            await collect_until(session.events(), TurnComplete)
        await bridge.ensure_conversation(user_id="alice", session_id="trip")  # kept as it is
        await bridge.ensure_conversation(user_id="bob", session_id="trip")  # Bob's own
        get = service.get_session
        alice = await get(app_name="tests", user_id="alice", session_id="trip")
        bob = await get(app_name="tests", user_id="bob", session_id="trip")
        assert "my name is Ada" in typed_turns(alice)
        assert typed_turns(bob) == []
    finally:
        await bridge.close()
        await close_session_service(service)


class BrokenStore(InMemorySessionService):
    async def get_session(self, **kwargs: Any) -> Session | None:
        raise ConnectionError("the database is down")


async def test_a_failing_store_makes_the_agent_unavailable() -> None:
    agent = Agent(name="named_agent", model="scripted-live", instruction="Be brief.")
    bridge = AdkAgentConnector(agent, BrokenStore(), app_name="tests")
    try:
        with pytest.raises(AgentUnavailable):
            await bridge.ensure_conversation(user_id="alice", session_id="trip")
    finally:
        await bridge.close()
