"""The bridge through ADK's own event flow: real `Runner.run_live`, scripted live model.

Pins down:
- a text turn comes back as an agent transcript, 24 kHz audio and `turn_complete`;
- caller speech (16 kHz PCM) is endpointed by the model: a final user transcript,
  then an answer;
- speech during an answer yields `AgentInterrupted` and the answer's audio stops;
- TEXT modality streams partial text, then the whole text;
- an unknown `session_id` is refused; a known one is continued (its events persist);
- leaving the session context ends `run_live` and leaves no task behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from google.adk.agents import Agent
from google.adk.sessions import InMemorySessionService

import gateway.models.scripted  # noqa: F401  (registers scripted-live)
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
from gateway.errors import UnknownSession


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
