"""ADK's bidi-demo protocol, `GET /ws/{user_id}/{session_id}`, over a real socket.

The client side is written from the shapes ADK's streaming guide documents (Part 1:
route, get-or-create, `model_dump_json(exclude_none=True, by_alias=True)`; Part 3:
Event fields; Part 5: binary PCM up, `inlineData` down), not from the gateway's code.
The gateway is the whole app (`create_app`), served by aiohttp on loopback.

Pins down:
- every frame the encoder writes validates as `google.adk.events.Event` and equals
  what ADK's own Event dumps for the same thing (ids and times aside), and a turn
  through the gateway sends the events ADK's runner yields to the demo's server;
- text frames: a typed turn; an image is refused (`unsupported_media_type`), other
  shapes are `invalid_message`; binary frames are 16 kHz PCM (even, bounded);
- a text turn (TEXT modality) streams `partial` text then the whole text, then
  `turnComplete`; binary PCM audio gets the caller's `inputTranscription`, the agent's
  `outputTranscription` and its speech as base64url 24 kHz `inlineData` with energy;
  speaking over the agent's answer gets `interrupted`;
- the path's session is the caller's own conversation: created when missing, continued
  when named again (the agent hears the history), another user naming the same id
  gets their own; another user's path is 403 whether the conversation exists or not;
- a bad frame gets an Event-shaped error and the socket carries on; an oversized one
  closes 1009; bad ids or flags are 400 before the upgrade;
- credentials (401 without, 403 for another user or a `sid` for another session),
  the page's Origin, the budget shared with WebRTC calls (4503 / 503), sessions per
  user (4429), the idle limit and the typed-turn rate, as on the seed's socket.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType, WSServerHandshakeError
from aiohttp.test_utils import TestClient
from google.adk.agents import Agent
from google.adk.agents.live_request_queue import LiveRequestQueue
from google.adk.agents.run_config import RunConfig, StreamingMode  # type: ignore[attr-defined]
from google.adk.events import Event
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.genai import types

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
from gateway.agent_bridge import AdkAgentConnector
from gateway.audio.formats import AGENT_INPUT_RATE_HZ, AGENT_OUTPUT_RATE_HZ, SAMPLE_BYTES
from gateway.audio.pcm import rms, tone
from gateway.auth.credentials import mint_token
from gateway.errors import BadRequest
from gateway.metrics.counters import COUNTERS
from gateway.models.scripted import ScriptedLiveConnection, ScriptedLiveModel
from gateway.wire import bidi_demo
from gateway.wire.socket_protocol import ClientAudio, ClientText, SocketParams
from tests.support.fakes import FakeAgentConnector
from tests.support.peers import HeadlessCaller

pytestmark = pytest.mark.timeout(30)

Client = TestClient[Any, Any]
Frame = dict[str, Any]
SECRET = "s" * 40
API_KEY = "k" * 24
UPGRADE_HEADERS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}
UNSUPPORTED = "unsupported_media_type"
#: What ADK adds to every dumped Event that says nothing about the turn.
BOOKKEEPING = {"id", "timestamp", "invocationId", "actions", "nodeInfo"}


class RecallConnection(ScriptedLiveConnection):
    """`scripted-live`, answering "You said: <text>; before: <earlier user turns>" from
    the history ADK sends when `run_live` starts."""

    async def send_content(self, content: types.Content) -> None:
        text = " ".join(p.text for p in content.parts or [] if p.text)
        earlier = [
            p.text for c in self.history if c.role == "user" for p in c.parts or [] if p.text
        ]
        said = f"{text}; before: {' | '.join(earlier) or 'nothing'}"
        await super().send_content(types.Content(role="user", parts=[types.Part(text=said)]))


class RecallLiveModel(ScriptedLiveModel):
    model: str = "recall-live"
    connection_type = RecallConnection


@pytest.fixture(autouse=True)
def fresh_counters() -> None:
    COUNTERS.reset()


@pytest.fixture
async def adk_connector() -> AsyncIterator[AdkAgentConnector]:
    """The real ADK runner behind the gateway, on a model that remembers the history."""
    agent = Agent(name="demo_agent", model=RecallLiveModel(), instruction="Be brief.")
    connector = AdkAgentConnector(agent, InMemorySessionService(), app_name="bidi-test")
    yield connector
    await connector.close()


def bearer(user: str, *, session: str | None = None) -> tuple[str, ...]:
    """A call token as the WebSocket subprotocols a browser offers."""
    return ("bearer", f"bearer.{mint_token(SECRET, user, session_id=session, ttl_s=60)}")


async def receive(ws: ClientWebSocketResponse, limit_s: float = 10.0) -> Frame:
    message = await ws.receive(timeout=limit_s)
    assert message.type is WSMsgType.TEXT, message
    frame: Frame = json.loads(message.data)
    return frame


async def frames_until(
    ws: ClientWebSocketResponse, stop: Callable[[Frame], bool], limit_s: float = 10.0
) -> list[Frame]:
    frames: list[Frame] = []
    async with asyncio.timeout(limit_s):
        while not frames or not stop(frames[-1]):
            frames.append(await receive(ws))
    return frames


def turn_complete(frame: Frame) -> bool:
    return frame.get("turnComplete") is True


def said(frames: list[Frame]) -> list[str]:
    return [f["outputTranscription"]["text"] for f in frames if "outputTranscription" in f]


def agent_pcm(frames: list[Frame]) -> bytes:
    """The agent's speech, decoded as the demo's client does (base64url)."""
    parts = [p for f in frames for p in f.get("content", {}).get("parts", [])]
    blobs = [p["inlineData"] for p in parts if "inlineData" in p]
    assert all(b["mimeType"] == "audio/pcm;rate=24000" for b in blobs)
    return b"".join(base64.urlsafe_b64decode(b["data"]) for b in blobs)


def pcm_frames(pcm: bytes, frame_bytes: int = 256) -> list[bytes]:
    """PCM cut as the demo's recorder sends it: one 128-sample AudioWorklet quantum."""
    return [pcm[i : i + frame_bytes] for i in range(0, len(pcm), frame_bytes)]


def normalized(frame: Frame) -> Frame:
    """A dumped Event without ADK's bookkeeping; the agent's name as the gateway's author."""
    out = {k: v for k, v in frame.items() if k not in BOOKKEEPING}
    if out.get("author") != "user":
        out["author"] = "agent"
    return out


# The Event ADK's run_live yields for each agent event (google/adk/models/
# gemini_llm_connection.py and live/_live_llm_flow.py: transcriptions carry `partial`,
# the user's are authored "user", audio and text are `role: model` content).
def adk_event(event: AgentEvent) -> Event:
    match event:
        case AgentAudio(pcm=pcm):
            blob = types.Blob(mime_type="audio/pcm;rate=24000", data=pcm)
            content = types.Content(role="model", parts=[types.Part(inline_data=blob)])
            return Event(author="a", content=content)
        case AgentText(text=text, final=final):
            content = types.Content(role="model", parts=[types.Part(text=text)])
            return Event(author="a", content=content, partial=not final)
        case Transcript(role="user", text=text, final=final):
            heard = types.Transcription(text=text, finished=final)
            return Event(author="user", input_transcription=heard, partial=not final)
        case Transcript(text=text, final=final):
            spoken = types.Transcription(text=text, finished=final)
            return Event(author="a", output_transcription=spoken, partial=not final)
        case TurnComplete():
            return Event(author="a", turn_complete=True)
        case AgentInterrupted():
            return Event(author="a", interrupted=True)
        case AgentError(code=code, message=message, fatal=fatal):
            return Event(author="a", error_code=code, error_message=message,
                         custom_metadata={"fatal": fatal})  # fmt: skip
    raise AssertionError(event)


@pytest.mark.parametrize(
    "event",
    [
        AgentAudio(tone(0.04, AGENT_OUTPUT_RATE_HZ) + b"\xfb\xff\xfe"),  # URL-unsafe bytes
        AgentText("Hel", final=False),
        AgentText("Hello there", final=True),
        Transcript("user", "what time", final=False),
        Transcript("user", "what time is it", final=True),
        Transcript("agent", "It is", final=False),
        Transcript("agent", "It is noon.", final=True),
        TurnComplete(),
        AgentInterrupted(),
        AgentError("agent_error", "the agent failed", fatal=True),
    ],
)
def test_each_frame_is_the_event_adk_dumps_for_it(event: AgentEvent) -> None:
    encoder = bidi_demo.BidiDemoEncoder(clock=lambda: 1.5, new_id=lambda: "id-1")
    raw = encoder.encode(event)
    assert raw is not None
    frame = json.loads(raw)
    expected = json.loads(adk_event(event).model_dump_json(exclude_none=True, by_alias=True))
    assert normalized(frame) == normalized(expected)
    parsed = Event.model_validate_json(raw)  # what a Python client of the demo would do
    assert (parsed.id, parsed.timestamp, parsed.author) == ("id-1", 1.5, frame["author"])
    assert parsed.invocation_id == encoder.invocation_id
    if isinstance(event, AgentAudio):
        assert parsed.content is not None
        assert parsed.content.parts
        assert parsed.content.parts[0].inline_data is not None
        assert parsed.content.parts[0].inline_data.data == event.pcm


def test_client_frames() -> None:
    assert bidi_demo.parse_text_frame('{"type": "text", "text": "hi"}') == ClientText("hi")
    assert bidi_demo.parse_binary_frame(b"\x01\x00" * 128) == ClientAudio(b"\x01\x00" * 128)
    params = bidi_demo.parse_params("demo-user", "demo-session-k3j", {"proactivity": "true"})
    assert params == SocketParams("demo-user", Modality.AUDIO, "demo-session-k3j")
    assert bidi_demo.parse_params("u", "s", {"modality": "TEXT"}).modality is Modality.TEXT
    bad = [("a b", "s", {}), ("u", "x" * 129, {}), ("u", "s", {"modality": "video"})]
    for user, session, query in bad:
        with pytest.raises(BadRequest):
            bidi_demo.parse_params(user, session, query)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_message"),
        ('["text"]', "invalid_message"),
        ('{"type": "audio", "data": "AAAA"}', "invalid_message"),
        ('{"type": "text"}', "invalid_message"),
        ('{"type": "text", "text": ""}', "invalid_message"),
        ('{"type": "text", "text": "' + "x" * 4001 + '"}', "invalid_message"),
        ('{"type": "image", "data": "/9j/4AAQ", "mimeType": "image/jpeg"}', UNSUPPORTED),
        (b"", "invalid_message"),
        (b"\x00\x01\x02", "invalid_message"),
        (bytes(70_000), "invalid_message"),
    ],
)
async def test_a_bad_frame_gets_an_error_event_and_the_socket_carries_on(
    start_gateway: Callable[..., Any], frame: str | bytes, code: str
) -> None:
    connector = FakeAgentConnector(echo_text=True)
    client: Client = await start_gateway(connector)
    async with client.ws_connect("/ws/demo-user/demo-session") as ws:
        await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
        error = await receive(ws)
        await ws.send_json({"type": "text", "text": "still there?"})
        answer = await frames_until(ws, turn_complete)
    assert error["errorCode"] == code
    assert error["errorMessage"]
    assert error["customMetadata"] == {"fatal": False}
    Event.model_validate(error)
    assert said(answer) == ["You said: still there?"]
    assert connector.last.texts == ["still there?"]
    assert connector.last.audio == b""


async def test_an_oversized_frame_closes_1009(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector()
    client: Client = await start_gateway(connector)
    async with client.ws_connect("/ws/u/s") as ws:
        await ws.send_bytes(bytes(bidi_demo.MAX_FRAME_BYTES + 2))
        closing = await ws.receive(timeout=5)
    assert closing.type is WSMsgType.CLOSE
    assert ws.close_code == 1009
    assert connector.last.audio == b""


@pytest.mark.parametrize("path", ["/ws/bad%20user/s", "/ws/u/" + "x" * 129, "/ws/u/s?modality=x"])
async def test_bad_ids_or_flags_are_400_before_the_upgrade(
    start_gateway: Callable[..., Any], path: str
) -> None:
    connector = FakeAgentConnector()
    client: Client = await start_gateway(connector)
    response = await client.get(path, headers=UPGRADE_HEADERS)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_request"
    assert connector.sessions == []


async def test_a_text_turn_streams_partial_text_then_turn_complete(
    start_gateway: Callable[..., Any], adk_connector: AdkAgentConnector
) -> None:
    client: Client = await start_gateway(adk_connector)
    async with client.ws_connect("/ws/demo-user/demo-session-t1?modality=text") as ws:
        await ws.send_json({"type": "text", "text": "hello"})
        frames = await frames_until(ws, turn_complete)
    text = [(f["content"]["parts"][0]["text"], f["partial"]) for f in frames if "content" in f]
    answer = "You said: hello; before: nothing"
    chunks = [t for t, partial in text if partial]
    assert chunks == ["You", " said:", " hello;", " before:", " nothing"]
    assert text[-1] == (answer, False)  # then the whole text, as ADK sends it
    assert {f["author"] for f in frames} == {"agent"}
    assert len({f["invocationId"] for f in frames}) == 1
    assert len({f["id"] for f in frames}) == len(frames)
    assert frames[-1]["turnComplete"] is True


async def test_binary_audio_gets_transcriptions_and_agent_speech(
    start_gateway: Callable[..., Any], adk_connector: AdkAgentConnector
) -> None:
    client: Client = await start_gateway(adk_connector)
    voice = tone(0.3, AGENT_INPUT_RATE_HZ, amplitude=6000)
    quiet = bytes(int(0.4 * AGENT_INPUT_RATE_HZ) * SAMPLE_BYTES)
    async with client.ws_connect("/ws/demo-user/demo-session-a1") as ws:
        for chunk in pcm_frames(voice + quiet):
            await ws.send_bytes(chunk)
        frames = await frames_until(ws, turn_complete)
    heard = [f for f in frames if "inputTranscription" in f]
    assert [(f["author"], f["inputTranscription"]) for f in heard] == [
        ("user", {"text": "(speech 0.3 s)", "finished": True})
    ]
    assert said(frames) == ["I heard (speech 0.3 s)"]
    speech = agent_pcm(frames)
    assert len(speech) / SAMPLE_BYTES / AGENT_OUTPUT_RATE_HZ == pytest.approx(1.5, abs=0.05)
    assert rms(speech) > 3000  # the scripted voice: a tone of amplitude 8000


async def test_speaking_over_the_answer_interrupts_it(
    start_gateway: Callable[..., Any], adk_connector: AdkAgentConnector
) -> None:
    client: Client = await start_gateway(adk_connector)
    async with client.ws_connect("/ws/demo-user/demo-session-b1") as ws:
        await ws.send_json({"type": "text", "text": "tell me a long story"})
        await frames_until(ws, lambda f: "inlineData" in str(f.get("content")))
        for chunk in pcm_frames(tone(0.2, AGENT_INPUT_RATE_HZ, amplitude=6000)):
            await ws.send_bytes(chunk)
        frames = await frames_until(ws, lambda f: f.get("interrupted") is True, limit_s=5)
    assert len(agent_pcm(frames)) / SAMPLE_BYTES / AGENT_OUTPUT_RATE_HZ < 3.0  # not all 6 s
    Event.model_validate(frames[-1])


async def run_like_the_demo(agent: Agent, text: str, modality: types.Modality) -> list[Frame]:
    """Part 1's server loop without the socket: ADK's runner on a fresh session, each
    event dumped with `model_dump_json(exclude_none=True, by_alias=True)`."""
    sessions = InMemorySessionService()
    runner = Runner(app_name="bidi-demo", agent=agent, session_service=sessions)
    await sessions.create_session(app_name="bidi-demo", user_id="u", session_id="s")
    queue = LiveRequestQueue()
    transcription = types.AudioTranscriptionConfig() if modality is types.Modality.AUDIO else None
    config = RunConfig(
        streaming_mode=StreamingMode.BIDI,
        response_modalities=[modality],
        input_audio_transcription=transcription,
        output_audio_transcription=transcription,
    )
    queue.send_content(types.Content(parts=[types.Part(text=text)]))
    frames: list[Frame] = []
    try:
        async for event in runner.run_live(
            user_id="u", session_id="s", live_request_queue=queue, run_config=config
        ):
            frames.append(json.loads(event.model_dump_json(exclude_none=True, by_alias=True)))
            if event.turn_complete:
                break
    finally:
        queue.close()
        await runner.close()
    return frames


@pytest.mark.parametrize("modality", [Modality.TEXT, Modality.AUDIO])
async def test_a_turn_sends_what_adks_runner_yields_to_the_demo_server(
    start_gateway: Callable[..., Any], adk_connector: AdkAgentConnector, modality: Modality
) -> None:
    agent = Agent(name="demo_agent", model=RecallLiveModel(), instruction="Be brief.")
    adk_modality = types.Modality.TEXT if modality is Modality.TEXT else types.Modality.AUDIO
    demo = await run_like_the_demo(agent, "hi there", adk_modality)
    client: Client = await start_gateway(adk_connector)
    async with client.ws_connect(f"/ws/u/parity-{modality.value}?modality={modality.value}") as ws:
        await ws.send_json({"type": "text", "text": "hi there"})
        ours = await frames_until(ws, turn_complete)

    def comparable(frame: Frame) -> Frame:
        # ADK leaves `partial` out where the model did not set it (scripted-live's
        # transcription); for Gemini's final transcriptions it says false, as we do.
        out = normalized(frame)
        if out.get("partial") is False and "content" not in out:
            del out["partial"]
        return out

    assert [comparable(f) for f in ours] == [comparable(f) for f in demo]


async def test_the_path_names_the_callers_own_conversation(
    start_gateway: Callable[..., Any], adk_connector: AdkAgentConnector
) -> None:
    client: Client = await start_gateway(adk_connector, jwt_secret=SECRET, api_keys=API_KEY)

    async def turn(user: str, path: str, text: str) -> list[str]:
        async with client.ws_connect(path, protocols=bearer(user)) as ws:
            await ws.send_json({"type": "text", "text": text})
            return said(await frames_until(ws, turn_complete))

    assert await turn("alice", "/ws/alice/trip", "my name is Ada") == [
        "You said: my name is Ada; before: nothing"
    ]
    assert await turn("alice", "/ws/alice/trip", "who am I") == [
        "You said: who am I; before: my name is Ada"
    ]
    # Bob may name the same id: it is his own conversation, with none of Alice's words.
    assert await turn("bob", "/ws/bob/trip", "who am I") == ["You said: who am I; before: nothing"]
    # Alice's path is refused to Bob the same way whether the conversation exists or not.
    refusals = []
    for session in ("trip", "never-made"):
        headers = {**UPGRADE_HEADERS, "Sec-WebSocket-Protocol": ", ".join(bearer("bob"))}
        response = await client.get(f"/ws/alice/{session}", headers=headers)
        refusals.append((response.status, await response.json()))
    assert refusals[0] == refusals[1]
    assert refusals[0][0] == 403
    # A token bound to one conversation (`sid`) opens no other.
    with pytest.raises(WSServerHandshakeError) as bound:
        await client.ws_connect("/ws/alice/other", protocols=bearer("alice", session="trip"))
    assert bound.value.status == 403
    stored = await adk_connector.session_service.list_sessions(app_name="bidi-test", user_id="bob")
    assert [s.id for s in stored.sessions] == ["trip"]


async def test_credentials_and_origin_are_checked_before_the_upgrade(
    start_gateway: Callable[..., Any],
) -> None:
    connector = FakeAgentConnector(echo_text=True)
    client: Client = await start_gateway(
        connector, jwt_secret=SECRET, allowed_origins="https://app.example"
    )
    with pytest.raises(WSServerHandshakeError) as anonymous:
        await client.ws_connect("/ws/alice/s1")
    assert anonymous.value.status == 401
    assert anonymous.value.headers is not None
    assert anonymous.value.headers["WWW-Authenticate"].startswith("Bearer ")
    with pytest.raises(WSServerHandshakeError) as cross_site:
        await client.ws_connect(
            "/ws/alice/s1", protocols=bearer("alice"), headers={"Origin": "https://evil.example"}
        )
    assert cross_site.value.status == 403
    assert connector.sessions == []
    token = mint_token(SECRET, "alice", session_id=None, ttl_s=60)
    for how in ("subprotocol", "query"):
        if how == "subprotocol":
            ws = await client.ws_connect(
                "/ws/alice/s1", protocols=bearer("alice"), headers={"Origin": "https://app.example"}
            )
            assert ws.protocol == "bearer"  # the token is never echoed
        else:
            ws = await client.ws_connect(f"/ws/alice/s1?token={token}")
        await ws.send_json({"type": "text", "text": how})
        assert said(await frames_until(ws, turn_complete)) == [f"You said: {how}"]
        await ws.close()
    assert [s.user_id for s in connector.sessions] == ["alice", "alice"]


async def test_bidi_sockets_share_the_budget_with_calls(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector()
    client: Client = await start_gateway(connector, max_calls=1)
    async with client.ws_connect("/ws/alice/s1") as first:
        await asyncio.wait_for(connector.session_opened.wait(), 5)
        caller = HeadlessCaller()
        try:
            offer = await caller.offer()
            call = await client.post(
                "/calls", data=offer, headers={"Content-Type": "application/sdp"}
            )
        finally:
            await caller.close()
        async with client.ws_connect("/ws/bob/s2") as second:
            refused = await receive(second)
            closing = await second.receive(timeout=5)
        assert not first.closed
    assert call.status == 503
    assert (await call.json())["error"]["code"] == "at_capacity"
    assert refused["errorCode"] == "at_capacity"
    assert refused["customMetadata"] == {"fatal": True}
    assert closing.type is WSMsgType.CLOSE
    assert second.close_code == 4503
    assert len(connector.sessions) == 1


async def test_sessions_per_user_idle_and_typed_turn_limits(
    start_gateway: Callable[..., Any],
) -> None:
    connector = FakeAgentConnector()
    client: Client = await start_gateway(
        connector, jwt_secret=SECRET, calls_per_user=1, call_idle_s=1.0, text_turns_per_s=1.0
    )
    async with client.ws_connect("/ws/alice/s1", protocols=bearer("alice")) as ws:
        async with client.ws_connect("/ws/alice/s2", protocols=bearer("alice")) as second:
            too_many = await receive(second)
            await second.receive(timeout=5)
        assert second.close_code == 4429
        assert too_many["errorCode"] == "too_many_sessions"
        for n in range(10):
            await ws.send_json({"type": "text", "text": f"turn {n}"})
        refused: list[Frame] = []
        while (message := await ws.receive(timeout=5)).type is WSMsgType.TEXT:
            refused.append(json.loads(message.data))  # then nothing: the idle limit ends it
    assert message.type is WSMsgType.CLOSE
    assert ws.close_code == 1000
    assert {f["errorCode"] for f in refused} == {"rate_limited"}
    assert 5 <= len(connector.last.texts) <= 6  # the burst of 5 (and what 1 s^-1 refills)
    assert len(connector.last.texts) + len(refused) == 10
    async with asyncio.timeout(5):
        while not connector.last.closed:  # the server releases the session after closing
            await asyncio.sleep(0.02)
    assert dict(zip(COUNTERS.names, COUNTERS.values(), strict=True))["ended_idle"] == 1
