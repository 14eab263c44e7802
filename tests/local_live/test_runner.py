"""The offline model under ADK's real live runner, with the gateway's default agent.

Pins down:
- spoken "what time is it now" (espeak-ng, fed in real time in 20 ms chunks) gives
  partial then final user transcripts, a real `get_current_time` call through ADK's
  tool flow, its response, then 24 kHz agent audio that, recognized offline, says
  the current hour; output transcription and `turn_complete` close the turn;
- the same question typed in TEXT modality is answered with streamed text holding
  the current time, and no audio;
- barge-in: speech during a long spoken answer yields `interrupted` at once, no
  more audio of that answer, then the new utterance is answered;
- `local-live` resolves through ADK's model registry, and its non-live
  `generate_content_async` makes the same tool call and answers with the result;
- two sessions at once are both answered.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest
from google.adk.agents import Agent
from google.adk.models.llm_request import LlmRequest
from google.adk.models.registry import LLMRegistry
from google.genai import types

from gateway.agents.default import build_default_agent
from gateway.audio.formats import AGENT_OUTPUT_MIME
from gateway.models.local_live import LocalLiveModel
from gateway.models.local_live.recognizer import normalize
from tests.support.adk_live import (
    function_calls,
    function_responses,
    is_user_final,
    live_call,
)
from tests.support.speech import hour_word, hours_heard, recording, said_hour, voiced_s


@pytest.fixture
def agent() -> Agent:
    return build_default_agent(environ={})


def test_local_live_is_in_the_registry() -> None:
    assert isinstance(LLMRegistry.new_llm("local-live"), LocalLiveModel)


async def test_spoken_question_is_answered_with_the_time(agent: Agent, tmp_path: Path) -> None:
    question = recording(tmp_path, "what time is it now", pad_s=0.3)
    before = datetime.now()
    async with live_call(agent, types.Modality.AUDIO) as call:
        await call.speak(question)
        turn_done = await call.wait_for(lambda e: bool(e.turn_complete))
        after = datetime.now()

    partials = [
        e.input_transcription.text
        for _, e in call.events
        if e.input_transcription and not e.input_transcription.finished
    ]
    assert partials
    assert partials[-1]
    heard_at = await call.wait_for(is_user_final, timeout=0)
    finals = [
        e.input_transcription.text
        for _, e in call.events
        if e.input_transcription and is_user_final(e)
    ]
    assert len(finals) == 1
    assert "time" in (finals[0] or "")

    calls = function_calls(call, "get_current_time")
    responses = function_responses(call, "get_current_time")
    assert len(calls) == 1
    assert calls[0].id
    assert len(responses) == 1
    assert responses[0].id == calls[0].id
    called_at = await call.wait_for(lambda e: bool(e.get_function_calls()), timeout=0)

    mimes = {
        p.inline_data.mime_type
        for _, e in call.events
        if e.content
        for p in e.content.parts or []
        if p.inline_data
    }
    assert mimes == {AGENT_OUTPUT_MIME}
    reply = call.audio()
    first_audio_at = await call.wait_for(
        lambda e: bool(e.content and any(p.inline_data for p in e.content.parts or [])), timeout=0
    )
    assert heard_at <= called_at <= first_audio_at <= turn_done
    assert voiced_s(reply, 24_000) >= 0.5
    assert hours_heard(reply, 24_000)  # a time of day is heard in the audio

    spoken = [
        e.output_transcription.text
        for _, e in call.events
        if e.output_transcription and e.output_transcription.finished
    ]
    assert spoken
    assert (spoken[-1] or "").startswith("It is ")
    assert said_hour(spoken[-1] or "") in {hour_word(before), hour_word(after)}


async def test_typed_question_in_text_mode_is_answered_with_text(agent: Agent) -> None:
    before = datetime.now()
    async with live_call(agent, types.Modality.TEXT) as call:
        call.queue.send_content(
            types.Content(role="user", parts=[types.Part(text="What time is it?")])
        )
        await call.wait_for(lambda e: bool(e.turn_complete))
        after = datetime.now()

    assert len(function_responses(call, "get_current_time")) == 1
    assert call.audio() == b""
    texts = [
        (e.partial, p.text)
        for _, e in call.events
        if e.content and e.author != "user"
        for p in e.content.parts or []
        if p.text
    ]
    assert any(partial for partial, _ in texts)
    whole = [text for partial, text in texts if not partial]
    assert len(whole) == 1
    hours = {f"It is {t.hour % 12 or 12}:" for t in (before, after)}
    assert any(whole[0].startswith(h) for h in hours), whole[0]


async def test_speech_during_an_answer_interrupts_it(agent: Agent, tmp_path: Path) -> None:
    stop = recording(tmp_path, "stop", pad_s=0.2)
    long_text = (
        "please repeat this rather long sentence about the rain in spain and the snow in norway"
    )
    async with live_call(agent, types.Modality.AUDIO) as call:
        call.queue.send_content(types.Content(role="user", parts=[types.Part(text=long_text)]))
        await call.wait_for(
            lambda e: bool(e.content and any(p.inline_data for p in e.content.parts or []))
        )
        await asyncio.sleep(0.5)
        assert len(call.audio()) / 48_000 > 3.0  # a long answer, still playing
        spoke_at = asyncio.get_running_loop().time()
        speaking = asyncio.create_task(call.speak(stop))
        interrupted_at = await call.wait_for(lambda e: bool(e.interrupted))
        await speaking
        heard_at = await call.wait_for(is_user_final)
        await call.wait_for(lambda e: bool(e.turn_complete))

    assert interrupted_at < heard_at
    assert interrupted_at - spoke_at < 1.0
    # Nothing more of the interrupted answer, and it never completed.
    assert call.audio(after=interrupted_at, before=heard_at) == b""
    completes = [at for at, e in call.events if e.turn_complete]
    assert all(at > heard_at for at in completes)
    # The barge-in itself was heard and answered.
    finals = [
        e.input_transcription.text
        for _, e in call.events
        if e.input_transcription and is_user_final(e)
    ]
    assert [normalize(f or "") for f in finals] == ["stop"]
    assert voiced_s(call.audio(after=heard_at), 24_000) > 0.2


async def test_non_live_generation_uses_the_same_replies() -> None:
    model = LocalLiveModel()
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(name="get_current_time", description="Returns the time.")
        ]
    )
    request = LlmRequest(
        contents=[types.Content(role="user", parts=[types.Part(text="What time is it?")])],
        config=types.GenerateContentConfig(tools=[tool]),
    )
    [called] = [r async for r in model.generate_content_async(request)]
    assert called.content is not None
    assert called.content.parts is not None
    call = called.content.parts[0].function_call
    assert call is not None
    assert call.name == "get_current_time"
    result = types.FunctionResponse(
        id=call.id, name=call.name, response={"report": "It is 3:07 AM."}
    )
    request.contents.append(
        types.Content(role="user", parts=[types.Part(function_response=result)])
    )
    [answer] = [r async for r in model.generate_content_async(request)]
    assert answer.content is not None
    assert answer.content.parts is not None
    assert answer.content.parts[0].text == "It is 3:07 AM."


async def test_two_sessions_at_once_are_both_answered(agent: Agent) -> None:
    """Concurrent calls share the recognizer pool and espeak's one thread."""

    async def ask() -> bytes:
        async with live_call(agent, types.Modality.AUDIO) as call:
            call.queue.send_content(
                types.Content(role="user", parts=[types.Part(text="What time is it?")])
            )
            await call.wait_for(lambda e: bool(e.turn_complete))
        assert len(function_responses(call, "get_current_time")) == 1
        return call.audio()

    first, second = await asyncio.gather(ask(), ask())
    assert voiced_s(first, 24_000) >= 0.5
    assert voiced_s(second, 24_000) >= 0.5
