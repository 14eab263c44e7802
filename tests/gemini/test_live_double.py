"""The Live API double against the real google-genai client (no ADK).

Pins down:
- the double serves the late-2026 live models: `gemini-3.8-live` (default) and the
  legacy `gemini-3.1-flash-live-preview`; any other id (the shut-down 2.x ids too) is
  refused with 1008 naming the request's API version; a bad key with 1007;
- setup/setupComplete on both API versions; caller audio arrives byte-exact (`audio`
  form); pre-3.x `mediaChunks` mid-session is closed with 1007 on both generations;
- a reply's first audio chunk comes in one serverContent with the output
  transcription and the spoken turn's one final input transcription; then audio,
  turnComplete and a resumption handle; a resumed setup carries the handle;
- setup fields each generation refuses close with 1007 "Request contains an invalid
  argument." and name the rule, on the JSON keys the real client sends; the fields
  it accepts pass (3.1's thinking level is recorded);
- typed text is a turn; blank or "." text and a bare turnComplete are nudges;
- tool calls: BLOCKING waits silently for the response (3.1 always, 3.8 declared);
  NON_BLOCKING (3.8 default) says a filler, then INTERRUPT / WHEN_IDLE / SILENT;
- stalls: empty_turn, silent and after_tool recover on a nudge; mid_reply ignores
  nudges and is delivered whole by a new connection resuming with the handle;
- an abrupt drop surfaces as 1006; other paths get HTTP 404.

Longer than the house ~400 lines on purpose: it is the one module that pins the
double to the real client, and splitting it would split the client helpers with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets
from google import genai
from google.genai import errors, types

from gateway.audio.pcm import rms
from tests.gemini.conftest import GOOD_KEY
from tests.support.live_api_double import (
    GENERATION_MODELS,
    INVALID_ARGUMENT_CLOSE,
    MEDIA_CHUNKS_CLOSE,
    Behaviour,
    Generation,
    LiveApiDouble,
    LiveConnection,
    Nudge,
    SelfSignedCert,
    tool_calling,
)
from tests.support.live_api_double.records import (
    audio_bytes,
    input_transcriptions,
    server_contents,
    spoken,
    trace,
)

LIVE_MODEL = "gemini-3.8-live"
PREVIEW_MODEL = "gemini-3.1-flash-live-preview"
MODELS: dict[Generation, str] = {"3.8": LIVE_MODEL, "3.1": PREVIEW_MODEL}
#: 0.5 s loud, then 1 s silence: one spoken turn for the double's energy VAD.
SPEECH = (b"\x00\x30" * 8000) + bytes(16000 * 2)
REPLY_BYTES = round(0.6 * 24_000) * 2  # the default 0.6 s reply at 24 kHz s16le
QUIET_S = 0.2  # how long "nothing happens" is watched for


def _client(double: LiveApiDouble, key: str = GOOD_KEY, version: str = "v1alpha") -> genai.Client:
    options = types.HttpOptions(
        base_url=double.base_url,
        api_version=version,
        async_client_args={"ssl": double.cert.client_context()},
    )
    return genai.Client(api_key=key, http_options=options)


async def _receive_turn(session: genai.live.AsyncSession) -> list[types.LiveServerMessage]:
    return [message async for message in session.receive()]


@dataclass
class Inbox:
    """Everything the client received on one session, gathered by an owned task."""

    messages: list[types.LiveServerMessage] = field(default_factory=list)
    error: errors.APIError | None = None

    async def gather(self, session: genai.live.AsyncSession) -> None:
        try:
            while True:
                async for message in session.receive():
                    self.messages.append(message)
        except errors.APIError as exc:
            self.error = exc

    async def until(self, done: Callable[[Inbox], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not done(self):
                await asyncio.sleep(0.01)

    @property
    def turn_completes(self) -> int:
        return sum(bool(m.server_content and m.server_content.turn_complete) for m in self.messages)

    @property
    def replies(self) -> int:
        """Finished replies: the double ends each with usageMetadata, after turnComplete."""
        return sum(m.usage_metadata is not None for m in self.messages)

    @property
    def tool_calls(self) -> list[types.FunctionCall]:
        return [
            call for m in self.messages if m.tool_call for call in m.tool_call.function_calls or []
        ]


@contextlib.asynccontextmanager
async def live_session(
    double: LiveApiDouble,
    model: str = LIVE_MODEL,
    config: types.LiveConnectConfig | None = None,
    version: str = "v1alpha",
) -> AsyncIterator[tuple[genai.live.AsyncSession, Inbox]]:
    async with _client(double, version=version).aio.live.connect(
        model=model, config=config
    ) as session:
        inbox = Inbox()
        task = asyncio.create_task(inbox.gather(session), name="test/inbox")
        try:
            yield session, inbox
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


MakeDouble = Callable[[Generation], Awaitable[LiveApiDouble]]


@pytest.fixture
async def make_double(double_cert: SelfSignedCert) -> AsyncIterator[MakeDouble]:
    """Start doubles of a given generation; fail the test if a behaviour raised."""
    doubles: list[LiveApiDouble] = []
    async with contextlib.AsyncExitStack() as stack:

        async def make(generation: Generation) -> LiveApiDouble:
            keys = frozenset({GOOD_KEY})
            double = LiveApiDouble(double_cert, accepted_api_keys=keys, generation=generation)
            doubles.append(await stack.enter_async_context(double))
            return double

        yield make
    assert not [d.behaviour_errors for d in doubles if d.behaviour_errors]


async def speak(session: genai.live.AsyncSession, pcm: bytes = SPEECH) -> None:
    for start in range(0, len(pcm), 640):
        chunk = types.Blob(data=pcm[start : start + 640], mime_type="audio/pcm;rate=16000")
        await session.send_realtime_input(audio=chunk)


async def quiet(conn: LiveConnection) -> None:
    """Assert the double sends nothing for `QUIET_S` (call it once the frames that
    should come have come: a reply's last is usageMetadata)."""
    before = len(conn.sent)
    await asyncio.sleep(QUIET_S)
    assert conn.sent[before:] == []


# -- models and refusals -----------------------------------------------------------


def test_the_generations_serve_the_live_models_of_late_2026() -> None:
    assert dict(GENERATION_MODELS) == MODELS


@pytest.mark.parametrize(
    ("generation", "model", "version"),
    [
        ("3.8", "gemini-2.5-flash-native-audio-preview-09-2025", "v1beta"),
        ("3.8", "gemini-live-2.5-flash-preview", "v1alpha"),
        ("3.8", PREVIEW_MODEL, "v1beta"),
        ("3.1", LIVE_MODEL, "v1alpha"),
        ("3.1", "gemini-no-such-model", "v1alpha"),
    ],
)
async def test_a_model_the_generation_does_not_serve_is_refused_with_1008(
    make_double: MakeDouble, generation: Generation, model: str, version: str
) -> None:
    double = await make_double(generation)
    with pytest.raises(errors.APIError) as caught:
        async with _client(double, version=version).aio.live.connect(model=model):
            pass
    assert caught.value.code == 1008
    assert f"models/{model} is not found for API version {version}" in str(caught.value)
    assert not double.connections


async def test_bad_key_is_refused_like_the_service(live_double: LiveApiDouble) -> None:
    with pytest.raises(errors.APIError) as caught:
        async with _client(live_double, key="wrong").aio.live.connect(model=LIVE_MODEL):
            pass
    assert caught.value.code == 1007
    assert "API key not valid" in str(caught.value)
    assert not live_double.connections


def _tools(behavior: types.Behavior | None = None) -> types.ToolListUnion:
    declaration = types.FunctionDeclaration(name="get_time", behavior=behavior)
    return [types.Tool(function_declarations=[declaration])]


def _refusal(generation: Generation, rule: str, path: str, sent: Any, **config: Any) -> Any:
    """A refusal case: the config, the rule it breaks, and where (dotted path) and how
    the real client puts it in the setup."""
    wire = (path, sent)
    config_ = types.LiveConnectConfig(**config)
    return pytest.param(generation, config_, rule, wire, id=f"{generation}-{rule}")


_LOW = types.ThinkingLevel.LOW
REFUSALS = [
    *[
        _refusal(g, "responseModalities:TEXT", "generationConfig.responseModalities", ["TEXT"],
                 response_modalities=[types.Modality.TEXT])
        for g in ("3.8", "3.1")
    ],
    *[
        _refusal(g, "enableAffectiveDialog", "generationConfig.enableAffectiveDialog", False,
                 enable_affective_dialog=False)
        for g in ("3.8", "3.1")
    ],
    _refusal("3.8", "thinkingConfig", "generationConfig.thinkingConfig",
             {"thinking_level": "LOW"}, thinking_config=types.ThinkingConfig(thinking_level=_LOW)),
    _refusal("3.8", "proactiveAudio:false", "proactivity", {"proactive_audio": False},
             proactivity=types.ProactivityConfig(proactive_audio=False)),
    _refusal("3.1", "proactivity", "proactivity", {"proactive_audio": True},
             proactivity=types.ProactivityConfig(proactive_audio=True)),
    _refusal("3.1", "thinkingBudget", "generationConfig.thinkingConfig",
             {"thinking_budget": 128}, thinking_config=types.ThinkingConfig(thinking_budget=128)),
    _refusal("3.1", "behavior:NON_BLOCKING", "tools.0.functionDeclarations.0.behavior",
             "NON_BLOCKING", tools=_tools(types.Behavior.NON_BLOCKING)),
]  # fmt: skip


def _at(value: Any, path: str) -> Any:
    for key in path.split("."):
        value = value[int(key)] if key.isdigit() else value[key]
    return value


@pytest.mark.parametrize(("generation", "config", "rule", "wire"), REFUSALS)
async def test_a_setting_the_model_refuses_closes_1007(
    make_double: MakeDouble,
    generation: Generation,
    config: types.LiveConnectConfig,
    rule: str,
    wire: tuple[str, Any],
) -> None:
    double = await make_double(generation)
    with pytest.raises(errors.APIError) as caught:
        async with _client(double).aio.live.connect(model=MODELS[generation], config=config):
            pass
    assert (caught.value.code, caught.value.details) == INVALID_ARGUMENT_CLOSE
    assert double.refused_settings == [rule]
    assert double.refused == [INVALID_ARGUMENT_CLOSE]
    path, value = wire
    assert _at(double.setups[-1], path) == value  # the key the real client sends
    assert not double.connections


async def test_settings_the_models_accept(make_double: MakeDouble) -> None:
    latest, preview = await make_double("3.8"), await make_double("3.1")
    always_proactive = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        proactivity=types.ProactivityConfig(proactive_audio=True),
        tools=_tools(types.Behavior.NON_BLOCKING),
    )
    async with live_session(latest, LIVE_MODEL, always_proactive):
        pass
    thinking = types.LiveConnectConfig(
        thinking_config=types.ThinkingConfig(thinking_level=types.ThinkingLevel.LOW),
        tools=_tools(types.Behavior.BLOCKING),
    )
    async with live_session(preview, PREVIEW_MODEL, thinking):
        pass
    assert latest.connections[0].setup["proactivity"] == {"proactive_audio": True}
    assert latest.connections[0].thinking_level is None
    conn = preview.connections[0]
    assert conn.setup["generationConfig"]["thinkingConfig"] == {"thinking_level": "LOW"}
    assert conn.thinking_level == "LOW"
    assert conn.declared_behavior("get_time") == "BLOCKING"
    assert latest.refused_settings == preview.refused_settings == []


# -- turns, replies, transcription ---------------------------------------------------


@pytest.mark.parametrize("version", ["v1alpha", "v1beta"])
async def test_audio_in_reply_out(live_double: LiveApiDouble, version: str) -> None:
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        session_resumption=types.SessionResumptionConfig(),
    )
    client = _client(live_double, version=version)
    async with client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
        await speak(session)
        messages = await asyncio.wait_for(_receive_turn(session), 10)
    conn = live_double.connections[0]
    assert conn.api_version == version
    assert conn.model == f"models/{LIVE_MODEL}"
    assert bytes(conn.audio_in) == SPEECH
    audio = b"".join(
        part.inline_data.data
        for m in messages
        if m.server_content and m.server_content.model_turn
        for part in m.server_content.model_turn.parts or []
        if part.inline_data and part.inline_data.data
    )
    assert len(audio) == REPLY_BYTES
    assert rms(audio) > 3000
    handles = [
        m.session_resumption_update.new_handle for m in messages if m.session_resumption_update
    ]
    assert handles[0] == "h1"  # issued at setup, before the turn
    assert messages[-1].server_content
    assert messages[-1].server_content.turn_complete


async def test_first_audio_chunk_carries_both_transcriptions(live_double: LiveApiDouble) -> None:
    async with live_session(live_double) as (session, inbox):
        await speak(session)
        await inbox.until(lambda i: i.turn_completes == 1)
    conn = live_double.connections[0]
    contents = server_contents(conn.sent)
    first = next(c for c in contents if "modelTurn" in c)
    assert first["inputTranscription"] == {"text": "<speech 0.50 s>", "finished": True}
    assert first["outputTranscription"] == {"text": "reply "}
    assert input_transcriptions(conn.sent) == [first["inputTranscription"]]  # one per turn
    assert spoken(conn.sent) == ["reply 1"]
    heard = [m.server_content.input_transcription for m in inbox.messages if m.server_content]
    assert [t.text for t in heard if t] == ["<speech 0.50 s>"]


@pytest.mark.parametrize("generation", ["3.8", "3.1"])
async def test_media_chunks_are_refused_mid_session(
    make_double: MakeDouble, generation: Generation
) -> None:
    double = await make_double(generation)
    async with live_session(double, MODELS[generation]) as (session, inbox):
        blob = types.Blob(data=SPEECH[:640], mime_type="audio/pcm;rate=16000")
        await session.send_realtime_input(media=blob)
        await inbox.until(lambda i: i.error is not None)
    assert inbox.error is not None
    assert (inbox.error.code, inbox.error.details) == MEDIA_CHUNKS_CLOSE
    assert double.connections[0].server_close == MEDIA_CHUNKS_CLOSE
    assert not double.connections[0].audio_in


async def test_typed_text_is_a_turn_blank_text_and_bare_turn_complete_are_nudges(
    live_double: LiveApiDouble,
) -> None:
    async with live_session(live_double) as (session, inbox):
        await session.send_realtime_input(text="what time is it")
        await inbox.until(lambda i: i.replies == 1)
        conn = live_double.connections[0]
        await session.send_realtime_input(text=".")
        await session.send_realtime_input(text=" ")
        await session.send_client_content(turn_complete=True)
        await quiet(conn)  # nothing owed: a nudge gets nothing
    assert conn.nudges == [
        Nudge("realtime_text", "."),
        Nudge("realtime_text", " "),
        Nudge("turn_complete"),
    ]
    assert spoken(conn.sent) == ["reply 1"]
    assert input_transcriptions(conn.sent) == []  # typed
    assert conn.history == [("user", "what time is it"), ("model", "reply 1")]


async def test_replayed_history_is_answered_on_a_nudge(live_double: LiveApiDouble) -> None:
    """ADK 2.13 on 3.x: history with turnComplete, then `realtimeInput.text = "."`."""
    config = types.LiveConnectConfig(
        history_config=types.HistoryConfig(initial_history_in_client_content=True)
    )
    async with live_session(live_double, config=config) as (session, inbox):
        turn = types.Content(role="user", parts=[types.Part(text="my name is Ada")])
        await session.send_client_content(turns=[turn], turn_complete=True)
        conn = await live_double.wait_connections(1)
        await quiet(conn)  # history alone leaves the model waiting
        await session.send_realtime_input(text=".")
        await inbox.until(lambda i: i.turn_completes == 1)
    assert conn.history == [("user", "my name is Ada"), ("model", "reply 1")]
    assert conn.history_received == [{"parts": [{"text": "my name is Ada"}], "role": "user"}]


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


async def test_tool_call_and_interruption_primitives(live_double: LiveApiDouble) -> None:
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


# -- tool calls ----------------------------------------------------------------------


def _time_tool(filler_audio_s: float = 0.6) -> Behaviour:
    return tool_calling(
        "get_time",
        {"zone": "UTC"},
        lambda response: f"it is {response['time']}",
        filler_audio_s=filler_audio_s,
    )


async def _answer_tool(
    session: genai.live.AsyncSession,
    inbox: Inbox,
    scheduling: types.FunctionResponseScheduling | None = None,
) -> None:
    await inbox.until(lambda i: bool(i.tool_calls))
    (call,) = inbox.tool_calls
    assert (call.name, call.args) == ("get_time", {"zone": "UTC"})
    response = types.FunctionResponse(
        id=call.id, name=call.name, response={"time": "noon"}, scheduling=scheduling
    )
    await session.send_tool_response(function_responses=[response])


@pytest.mark.parametrize(
    ("generation", "behavior", "scheduling"),
    [
        ("3.8", types.Behavior.BLOCKING, None),
        ("3.1", None, types.FunctionResponseScheduling.INTERRUPT),  # ignored: blocking
    ],
)
async def test_blocking_tool_call_waits_silently_for_the_response(
    make_double: MakeDouble,
    generation: Generation,
    behavior: types.Behavior | None,
    scheduling: types.FunctionResponseScheduling | None,
) -> None:
    double = await make_double(generation)
    double.default_behaviour = _time_tool()
    config = types.LiveConnectConfig(tools=_tools(behavior))
    async with live_session(double, MODELS[generation], config) as (session, inbox):
        await speak(session)
        await inbox.until(lambda i: bool(i.tool_calls))
        conn = double.connections[0]
        await quiet(conn)  # no filler, no turnComplete until the response
        await _answer_tool(session, inbox, scheduling)
        await inbox.until(lambda i: i.turn_completes == 1)
    assert conn.declared_behavior("get_time") == "BLOCKING"
    assert trace(conn.sent) == [
        "setupComplete",
        "toolCall",
        "modelTurn",
        "generationComplete",
        "turnComplete",
        "usageMetadata",
    ]
    assert spoken(conn.sent) == ["it is noon"]
    first = next(c for c in server_contents(conn.sent) if "modelTurn" in c)
    assert first["inputTranscription"]["text"] == "<speech 0.50 s>"  # with the answer


_NON_BLOCKING_TRACES = {
    "INTERRUPT": [
        "modelTurn",
        "interrupted",
        "modelTurn",
        "generationComplete",
        "turnComplete",
        "usageMetadata",
    ],
    "WHEN_IDLE": ["modelTurn", "generationComplete", "turnComplete", "usageMetadata"] * 2,
    "SILENT": ["modelTurn", "generationComplete", "turnComplete", "usageMetadata"],
}


@pytest.mark.parametrize(
    ("scheduling", "expected"), [("INTERRUPT", 1), ("WHEN_IDLE", 2), (None, 2), ("SILENT", 1)]
)
async def test_non_blocking_tool_call_speaks_a_filler_then_follows_scheduling(
    live_double: LiveApiDouble, scheduling: str | None, expected: int
) -> None:
    # A long filler in the INTERRUPT case, so that the response surely finds it speaking.
    live_double.default_behaviour = _time_tool(4.0 if scheduling == "INTERRUPT" else 0.6)
    sent = None if scheduling is None else types.FunctionResponseScheduling(scheduling)
    async with live_session(live_double) as (session, inbox):
        await session.send_realtime_input(text="what time is it")
        await _answer_tool(session, inbox, sent)
        await inbox.until(lambda i: i.replies == expected)
        conn = live_double.connections[0]
        await quiet(conn)
    assert conn.declared_behavior("get_time") == "NON_BLOCKING"  # 3.8's default
    assert [r.scheduling for r in conn.tool_results] == [scheduling]
    names = trace(conn.sent)
    assert names[:2] == ["setupComplete", "toolCall"]
    assert names[2:] == _NON_BLOCKING_TRACES[scheduling or "WHEN_IDLE"]
    said = spoken(conn.sent)
    if scheduling == "INTERRUPT":
        assert said[1:] == ["it is noon"]
        assert "let me check".startswith(said[0])
        assert said[0] != "let me check"
        assert audio_bytes(conn.sent) < round(4.0 * 24_000) * 2 / 2  # the filler was cut
    elif scheduling == "SILENT":
        assert said == ["let me check"]
    else:
        assert said == ["let me check", "it is noon"]


# -- stalls --------------------------------------------------------------------------


@pytest.mark.parametrize("nudge", ["realtime_text", "turn_complete"])
async def test_empty_turn_stall_then_a_nudge_gets_the_reply(
    live_double: LiveApiDouble, nudge: str
) -> None:
    live_double.stall_plan.append("empty_turn")
    async with live_session(live_double) as (session, inbox):
        await speak(session)
        await inbox.until(lambda i: i.turn_completes == 1)
        conn = live_double.connections[0]
        heard, completed = server_contents(conn.sent)
        assert heard["inputTranscription"]["finished"] is True  # the turn was heard...
        assert completed == {"turnComplete": True}  # ...then a bare turnComplete: no words
        await quiet(conn)
        if nudge == "realtime_text":
            await session.send_realtime_input(text=".")
        else:
            await session.send_client_content(turn_complete=True)
        await inbox.until(lambda i: i.turn_completes == 2)
    assert conn.stalls_served == ["empty_turn"]
    assert [n.kind for n in conn.nudges] == [nudge]
    assert spoken(conn.sent) == ["reply 1"]
    assert audio_bytes(conn.sent) == REPLY_BYTES
    assert len(input_transcriptions(conn.sent)) == 1


async def test_silent_stall_then_a_nudge_gets_the_reply(live_double: LiveApiDouble) -> None:
    async with live_session(live_double) as (session, inbox):
        conn = await live_double.wait_connections(1)
        conn.stall_next("silent")
        await session.send_realtime_input(text="are you there")
        await quiet(conn)
        assert trace(conn.sent) == ["setupComplete"]
        await session.send_realtime_input(text=" ")
        await inbox.until(lambda i: i.turn_completes == 1)
    assert conn.stalls_served == ["silent"]
    assert spoken(conn.sent) == ["reply 1"]
    assert audio_bytes(conn.sent) == REPLY_BYTES


@pytest.mark.parametrize("generation", ["3.8", "3.1"])
async def test_after_tool_stall_then_a_nudge_gets_the_result(
    make_double: MakeDouble, generation: Generation
) -> None:
    double = await make_double(generation)
    double.default_behaviour = _time_tool()
    double.stall_plan.append("after_tool")
    fillers = 1 if generation == "3.8" else 0  # 3.8 says "let me check" meanwhile
    async with live_session(double, MODELS[generation]) as (session, inbox):
        await session.send_realtime_input(text="what time is it")
        await _answer_tool(session, inbox)
        conn = double.connections[0]
        await inbox.until(lambda i: i.replies == fillers and bool(conn.stalls_served))
        await quiet(conn)
        assert conn.stalls_served == ["after_tool"]  # taken by the tool response
        await session.send_realtime_input(text=".")
        await inbox.until(lambda i: i.turn_completes == fillers + 1)
    assert spoken(conn.sent) == ["let me check", "it is noon"][1 - fillers :]


@pytest.mark.parametrize("trigger", ["nudge", "user_turn"])
async def test_mid_reply_stall_is_delivered_whole_by_a_resumed_connection(
    live_double: LiveApiDouble, trigger: str
) -> None:
    live_double.stall_plan.append("mid_reply")
    resume = types.LiveConnectConfig(session_resumption=types.SessionResumptionConfig())
    async with live_session(live_double, config=resume) as (session, inbox):
        await session.send_realtime_input(text="tell me a story")
        first = await live_double.wait_connections(1)
        await inbox.until(lambda i: audio_bytes(first.sent) >= REPLY_BYTES // 2)
        await session.send_realtime_input(text=".")
        await quiet(first)  # the reply stopped; nudges are ignored on the stuck connection
        assert audio_bytes(first.sent) == REPLY_BYTES // 2
    assert inbox.turn_completes == 0
    assert spoken(first.sent) == ["reply "]  # about half the words
    assert first.stalls_served == ["mid_reply"]
    handle = first.handles_issued[-1]
    resume = types.LiveConnectConfig(
        session_resumption=types.SessionResumptionConfig(handle=handle)
    )
    async with live_session(live_double, config=resume) as (session, inbox):
        second = await live_double.wait_connections(2)
        assert second.owed is not None
        if trigger == "nudge":
            await session.send_realtime_input(text=".")
        else:
            await session.send_realtime_input(text="hello?")
        await inbox.until(lambda i: i.turn_completes == (1 if trigger == "nudge" else 2))
    assert second.resumed_handle == handle
    replies = ["reply 1"] if trigger == "nudge" else ["reply 1", "reply 2"]
    assert spoken(second.sent) == replies
    assert audio_bytes(second.sent) == REPLY_BYTES * len(replies)
    assert second.history[0] == ("user", "tell me a story")  # the server kept the turn
    assert ("model", "reply 1") in second.history
    assert not live_double.owed_replies
