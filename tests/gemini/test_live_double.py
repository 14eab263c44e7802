"""The Live API double against the real google-genai client (no ADK).

Pins down: setup/setupComplete on both API versions; caller audio arrives byte-exact
(mediaChunks and audio forms); a reply carries 24 kHz audio, transcription,
turnComplete and a resumption handle; a resumed setup carries the handle; a bad key
is refused with 1007 and an unknown model with 1008, as the service does; an abrupt
drop surfaces as 1006; other paths get HTTP 404.
"""

from __future__ import annotations

import asyncio

import pytest
import websockets
from google import genai
from google.genai import errors, types

from gateway.audio.pcm import rms
from tests.gemini.conftest import GOOD_KEY, LIVE_MODEL
from tests.support.live_api_double import LiveApiDouble, LiveConnection


def _client(double: LiveApiDouble, key: str = GOOD_KEY, version: str = "v1alpha") -> genai.Client:
    options = types.HttpOptions(
        base_url=double.base_url,
        api_version=version,
        async_client_args={"ssl": double.cert.client_context()},
    )
    return genai.Client(api_key=key, http_options=options)


async def _receive_turn(session: genai.live.AsyncSession) -> list[types.LiveServerMessage]:
    return [message async for message in session.receive()]


@pytest.mark.parametrize("version", ["v1alpha", "v1beta"])
async def test_audio_in_reply_out(live_double: LiveApiDouble, version: str) -> None:
    speech = (b"\x00\x30" * 8000) + bytes(16000 * 2)  # 0.5 s loud, then 1 s silence
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        session_resumption=types.SessionResumptionConfig(),
    )
    client = _client(live_double, version=version)
    async with client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
        for start in range(0, len(speech), 640):
            chunk = types.Blob(data=speech[start : start + 640], mime_type="audio/pcm;rate=16000")
            if start % 1280:
                await session.send_realtime_input(audio=chunk)
            else:
                await session.send_realtime_input(media=chunk)
        messages = await asyncio.wait_for(_receive_turn(session), 10)
    conn = live_double.connections[0]
    assert conn.api_version == version
    assert conn.model == f"models/{LIVE_MODEL}"
    assert bytes(conn.audio_in) == speech
    audio = b"".join(
        part.inline_data.data
        for m in messages
        if m.server_content and m.server_content.model_turn
        for part in m.server_content.model_turn.parts or []
        if part.inline_data and part.inline_data.data
    )
    assert len(audio) == round(0.6 * 24_000) * 2
    assert rms(audio) > 3000
    handles = [
        m.session_resumption_update.new_handle for m in messages if m.session_resumption_update
    ]
    assert handles[0] == "h1"  # issued at setup, before the turn
    assert messages[-1].server_content
    assert messages[-1].server_content.turn_complete


async def test_resumed_setup_carries_the_handle_and_restores_history(
    live_double: LiveApiDouble,
) -> None:
    async def remember(conn: LiveConnection) -> None:
        conn.history.append(("user", "my name is Ada"))
        await conn.issue_handle()
        await conn.closed.wait()

    live_double.behaviours[0] = remember
    client = _client(live_double)
    resume = types.LiveConnectConfig(session_resumption=types.SessionResumptionConfig())
    async with client.aio.live.connect(model=LIVE_MODEL, config=resume) as session:
        update = await anext(aiter(session.receive()))
    assert update.session_resumption_update is not None
    handle = update.session_resumption_update.new_handle
    config = types.LiveConnectConfig(
        session_resumption=types.SessionResumptionConfig(handle=handle)
    )
    async with client.aio.live.connect(model=LIVE_MODEL, config=config):
        second = await live_double.wait_connections(2)
    assert second.resumed_handle == handle
    assert ("user", "my name is Ada") in second.history


async def test_bad_key_is_refused_like_the_service(live_double: LiveApiDouble) -> None:
    with pytest.raises(errors.APIError) as caught:
        async with _client(live_double, key="wrong").aio.live.connect(model=LIVE_MODEL):
            pass
    assert caught.value.code == 1007
    assert "API key not valid" in str(caught.value)
    assert not live_double.connections


async def test_unknown_model_is_refused_like_the_service(live_double: LiveApiDouble) -> None:
    with pytest.raises(errors.APIError) as caught:
        async with _client(live_double).aio.live.connect(model="gemini-no-such-model"):
            pass
    assert caught.value.code == 1008
    assert "models/gemini-no-such-model is not found for API version v1alpha" in str(caught.value)


async def test_abrupt_drop_is_1006(live_double: LiveApiDouble) -> None:
    async def drop(conn: LiveConnection) -> None:
        await conn.send_audio(b"\x00\x10" * 2400)
        await conn.abort()

    live_double.behaviours[0] = drop
    with pytest.raises(errors.APIError) as caught:
        async with _client(live_double).aio.live.connect(model=LIVE_MODEL) as session:
            await asyncio.wait_for(_receive_turn(session), 10)
    assert caught.value.code == 1006


async def test_other_paths_get_404(live_double: LiveApiDouble) -> None:
    url = f"wss://127.0.0.1:{live_double.port}/ws/other"
    with pytest.raises(websockets.InvalidStatus) as caught:
        async with websockets.connect(url, ssl=live_double.cert.client_context()):
            pass
    assert caught.value.response.status_code == 404


async def test_tool_call_and_interruption(live_double: LiveApiDouble) -> None:
    async def tools(conn: LiveConnection) -> None:
        call_id = await conn.tool_call("get_time", {"zone": "UTC"})
        async with asyncio.timeout(5):
            while not conn.tool_responses:
                await asyncio.sleep(0.01)
        await conn.interrupted()
        await conn.send({"serverContent": {"turnComplete": True}})
        conn.history.append(("tool", call_id))

    live_double.behaviours[0] = tools
    async with _client(live_double).aio.live.connect(model=LIVE_MODEL) as session:
        message = await anext(aiter(session.receive()))
        assert message.tool_call
        assert message.tool_call.function_calls
        call = message.tool_call.function_calls[0]
        assert (call.name, call.args) == ("get_time", {"zone": "UTC"})
        response = types.FunctionResponse(id=call.id, name=call.name, response={"time": "noon"})
        await session.send_tool_response(function_responses=[response])
        rest = await asyncio.wait_for(_receive_turn(session), 5)
    assert any(m.server_content and m.server_content.interrupted for m in rest)
    conn = live_double.connections[0]
    (function_response,) = conn.tool_responses[0]["functionResponses"]
    assert function_response["id"] == call.id
    assert function_response["response"] == {"time": "noon"}
