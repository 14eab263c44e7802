"""The offline default agent inside a running gateway, called by a real aiortc peer.

Pins down:
- a caller saying "what time is it now" (espeak-ng, through Opus) gets a final user
  `transcript` containing "time", then spoken audio that, recognized offline, says
  the current hour;
- in text mode, the typed question gets `text` messages with the current time;
- barge-in: the caller speaking during a long answer gets `interrupted`, and the
  audio it receives is silent from 100 ms after that message on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from google.adk.sessions import InMemorySessionService

from gateway.agent_bridge import AdkAgentConnector
from gateway.agents.default import build_default_agent
from gateway.audio.formats import WEBRTC_RATE_HZ
from tests.support.peers import call_gateway, listening_caller
from tests.support.speech import hour_word, hours_heard, recording, said_hour, voiced_s

RATE = WEBRTC_RATE_HZ


@pytest.fixture
async def connector() -> AsyncIterator[AdkAgentConnector]:
    agent = build_default_agent(environ={})
    connector = AdkAgentConnector(agent, InMemorySessionService(), app_name="offline")
    yield connector
    await connector.close()


async def test_caller_asks_the_time_and_hears_it(
    connector: AdkAgentConnector, start_gateway: Callable[..., Any], tmp_path: Path
) -> None:
    client = await start_gateway(connector)
    caller = listening_caller()
    try:
        location = await call_gateway(client, caller)
        await caller.wait_connected()
        await caller.wait_message(type="session")
        before = datetime.now()
        caller.mic.play_pcm(recording(tmp_path, "what time is it now", rate_hz=RATE))
        user = await caller.wait_message(type="transcript", role="user", final=True, limit_s=15)
        assert "time" in user["text"]
        await caller.wait_message(type="turn_complete", limit_s=15)
        after = datetime.now()
        await asyncio.sleep(0.3)  # the answer's last frames are still on the wire
        reply = caller.audio_after(caller.message_time(user))
        assert voiced_s(reply, RATE) >= 0.5
        assert hours_heard(reply, RATE)  # a time of day is heard in the audio
        agent = await caller.wait_message(type="transcript", role="agent", final=True)
        assert agent["text"].startswith("It is ")
        assert said_hour(agent["text"]) in {hour_word(before), hour_word(after)}
        assert (await client.delete(location)).status == 204
    finally:
        await caller.close()


async def test_typed_question_in_text_mode(
    connector: AdkAgentConnector, start_gateway: Callable[..., Any]
) -> None:
    client = await start_gateway(connector)
    caller = listening_caller()
    try:
        location = await call_gateway(client, caller, "?mode=text")
        await caller.wait_connected()
        await caller.wait_channel_open()
        await caller.wait_message(type="session", mode="text")
        before = datetime.now()
        caller.send({"type": "text", "text": "What time is it?"})
        answer = await caller.wait_message(type="text", final=True, limit_s=15)
        after = datetime.now()
        hours = {f"It is {t.hour % 12 or 12}:" for t in (before, after)}
        assert any(answer["text"].startswith(h) for h in hours), answer["text"]
        await caller.wait_message(type="turn_complete")
        assert (await client.delete(location)).status == 204
    finally:
        await caller.close()


async def test_barge_in_silences_the_answer_within_100_ms(
    connector: AdkAgentConnector, start_gateway: Callable[..., Any], tmp_path: Path
) -> None:
    client = await start_gateway(connector)
    caller = listening_caller()
    stop = recording(tmp_path, "stop", rate_hz=RATE)
    try:
        location = await call_gateway(client, caller)
        await caller.wait_connected()
        await caller.wait_channel_open()
        caller.send(
            {"type": "text", "text": "please repeat this long sentence about the rain in spain"}
        )
        async with asyncio.timeout(10):  # the answer is playing
            while sum(f.rms > 300 for f in caller.frames[-10:]) < 5:
                await asyncio.sleep(0.02)
        caller.mic.play_pcm(stop)
        interrupted = await caller.wait_message(type="interrupted")
        cut_at = caller.message_time(interrupted)
        heard = await caller.wait_message(type="transcript", role="user", final=True)
        window = [f for f in caller.frames if cut_at + 0.1 <= f.at <= caller.message_time(heard)]
        assert len(window) >= 10
        assert max(f.rms for f in window) < 50, [round(f.rms) for f in window]
        await caller.wait_message(type="turn_complete")
        assert (await client.delete(location)).status == 204
    finally:
        await caller.close()
