"""The seed's WebSocket transport, `GET /ws/{user_id}?is_audio=`, over a real socket.

Pins down:
- text mode: a `text/plain` turn reaches the agent; the answer streams back as
  `text/plain` increments that add up to the agent's words, then `turn_complete`;
- audio mode: base64 16 kHz PCM reaches the agent byte for byte; agent PCM comes
  back base64 byte for byte; the agent's transcript arrives as increments;
- every malformed or unsupported frame gets an `error` reply with its code and
  the socket carries on; a frame over the size limit closes the socket (1009);
- `events=1` sends the data channel's events (session, transcripts, turn);
- `session_id=` continues a known conversation, an unknown one closes 4404;
- a bad user id or flag is a 400 before any upgrade;
- at capacity, an unavailable agent (4503) or a failed agent (1011): an `error`
  message first, then the close code;
- the agent session is released however the socket ends.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from gateway.agent_api import (
    AgentAudio,
    AgentConnector,
    AgentError,
    AgentEvent,
    AgentInterrupted,
    AgentText,
    Modality,
    Transcript,
    TurnComplete,
)
from gateway.auth.http import EDGE_AUTH_KEY, EdgeAuth
from gateway.calls.admission import Admission
from gateway.errors import AgentUnavailable, GatewayError, UnknownSession
from gateway.websocket_transport import WebSocketTransport, add_websocket_routes

CONNECTOR_KEY = web.AppKey("connector", AgentConnector)
AGENT_PCM = bytes(range(256)) * 30  # 7,680 bytes: 160 ms at 24 kHz


class FakeAgentSession:
    """Answers every text turn (and an audio `end` marker) from a script."""

    def __init__(self, session_id: str, modality: Modality) -> None:
        self.session_id = session_id
        self.modality = modality
        self.audio = bytearray()
        self.texts: list[str] = []
        self.released = False
        self._events: asyncio.Queue[AgentEvent | None] = asyncio.Queue()

    def send_audio(self, pcm: bytes) -> None:
        self.audio += pcm

    def send_text(self, text: str) -> None:
        self.texts.append(text)
        for event in self._script(text):
            self._events.put_nowait(event)

    def _script(self, text: str) -> list[AgentEvent | None]:
        if text == "fail":
            return [AgentError("agent_error", "the agent failed")]
        if text == "hang up":
            return [None]
        if text == "interrupt":
            return [AgentInterrupted()]
        answer = f"You said {text}"
        if self.modality is Modality.TEXT:
            return [AgentText("You said ", False), AgentText(text, False),
                    AgentText(answer, True), TurnComplete()]  # fmt: skip
        return [Transcript("user", text, True), AgentAudio(AGENT_PCM),
                Transcript("agent", "You said", False), Transcript("agent", answer, True),
                TurnComplete()]  # fmt: skip

    async def events(self) -> AsyncIterator[AgentEvent]:
        while (event := await self._events.get()) is not None:
            yield event


class FakeAgentConnector:
    """Implements `AgentConnector`; remembers every session it opened."""

    def __init__(self, fail_with: GatewayError | None = None) -> None:
        self.sessions: list[FakeAgentSession] = []
        self.fail_with = fail_with

    @property
    def open_sessions(self) -> int:
        return sum(not s.released for s in self.sessions)

    @asynccontextmanager
    async def open_session(
        self, *, user_id: str, session_id: str | None, modality: Modality, call_id: str = ""
    ) -> AsyncIterator[FakeAgentSession]:
        if self.fail_with is not None:
            raise self.fail_with
        if session_id is not None and session_id not in {s.session_id for s in self.sessions}:
            raise UnknownSession("no such session")
        session = FakeAgentSession(session_id or f"s{len(self.sessions)}", modality)
        self.sessions.append(session)
        try:
            yield session
        finally:
            session.released = True


Client = TestClient[web.Request, web.Application]
UPGRADE_HEADERS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Awaitable[tuple[Client, WebSocketTransport]]]]:
    clients: list[Client] = []

    async def start(
        connector: FakeAgentConnector, max_sockets: int = 4
    ) -> tuple[Client, WebSocketTransport]:
        app = web.Application()
        app[CONNECTOR_KEY] = connector
        app[EDGE_AUTH_KEY] = EdgeAuth(None, None, frozenset())  # anonymous, as on loopback
        transport = add_websocket_routes(app, CONNECTOR_KEY, admission=Admission(max_sockets))
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client, transport

    yield start
    for client in clients:
        await client.close()


async def receive_json(ws: Any) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), 5)
    assert message.type is WSMsgType.TEXT, message
    result: dict[str, Any] = json.loads(message.data)
    return result


async def until_released(connector: FakeAgentConnector) -> None:
    for _ in range(100):
        if connector.open_sessions == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("agent session not released")


async def test_text_mode_streams_the_answer_then_turn_complete(start: Any) -> None:
    connector = FakeAgentConnector()
    client, _ = await start(connector)
    async with client.ws_connect("/ws/123?is_audio=false") as ws:
        await ws.send_str(json.dumps({"mime_type": "text/plain", "data": "hello"}))
        first, second, done = [await receive_json(ws) for _ in range(3)]
    assert first == {"mime_type": "text/plain", "data": "You said "}
    assert second == {"mime_type": "text/plain", "data": "hello"}
    assert done == {"turn_complete": True, "interrupted": False}
    assert connector.sessions[0].texts == ["hello"]
    assert connector.sessions[0].modality is Modality.TEXT
    await until_released(connector)


async def test_audio_mode_carries_pcm_both_ways_and_agent_words(start: Any) -> None:
    connector = FakeAgentConnector()
    client, _ = await start(connector)
    caller_pcm = bytes(range(200)) * 16  # 3,200 bytes: 100 ms at 16 kHz
    async with client.ws_connect("/ws/demo-user?is_audio=true") as ws:
        for i in range(0, len(caller_pcm), 320):
            chunk = base64.b64encode(caller_pcm[i : i + 320]).decode()
            await ws.send_str(json.dumps({"mime_type": "audio/pcm", "data": chunk}))
        await ws.send_str(json.dumps({"mime_type": "text/plain", "data": "hi"}))
        audio, words1, words2, done = [await receive_json(ws) for _ in range(4)]
    session = connector.sessions[0]
    assert session.modality is Modality.AUDIO
    assert bytes(session.audio) == caller_pcm
    assert audio["mime_type"] == "audio/pcm"
    assert base64.b64decode(audio["data"]) == AGENT_PCM
    assert [words1, words2] == [
        {"mime_type": "text/plain", "data": "You said"},
        {"mime_type": "text/plain", "data": " hi"},
    ]
    assert done == {"turn_complete": True, "interrupted": False}
    await until_released(connector)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_message"),
        ("[1, 2]", "invalid_message"),
        ('{"mime_type": "text/plain"}', "invalid_message"),
        ('{"mime_type": "text/plain", "data": ""}', "invalid_message"),
        ('{"mime_type": "text/plain", "data": "' + "x" * 4001 + '"}', "invalid_message"),
        ('{"data": "x"}', "invalid_message"),
        ('{"mime_type": "audio/pcm", "data": "%%%not base64"}', "invalid_message"),
        ('{"mime_type": "audio/pcm", "data": "AAAA"}', "invalid_message"),
        ('{"mime_type": "image/jpeg", "data": "AAAA"}', "unsupported_media_type"),
        (b"\x00\x01", "invalid_message"),
    ],
)
async def test_a_bad_frame_gets_an_error_and_the_socket_carries_on(
    start: Any, frame: str | bytes, code: str
) -> None:
    connector = FakeAgentConnector()
    client, transport = await start(connector)
    async with client.ws_connect("/ws/u1?is_audio=false") as ws:
        await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
        error = await receive_json(ws)
        await ws.send_str(json.dumps({"mime_type": "text/plain", "data": "still there?"}))
        answer = await receive_json(ws)
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["fatal"] is False
    assert error["message"]
    assert answer == {"mime_type": "text/plain", "data": "You said "}
    assert transport.rejected_frames == 1
    assert connector.sessions[0].texts == ["still there?"]
    await until_released(connector)


async def test_an_oversized_frame_closes_1009_and_releases_the_session(start: Any) -> None:
    connector = FakeAgentConnector()
    client, _ = await start(connector)
    async with client.ws_connect("/ws/u1?is_audio=true") as ws:
        big = base64.b64encode(bytes(200 * 1024)).decode()
        await ws.send_str(json.dumps({"mime_type": "audio/pcm", "data": big}))
        closing = await asyncio.wait_for(ws.receive(), 5)
    assert closing.type is WSMsgType.CLOSE
    assert ws.close_code == 1009
    assert connector.sessions[0].audio == b""
    await until_released(connector)


async def test_events_extension_sends_data_channel_events(start: Any) -> None:
    connector = FakeAgentConnector()
    client, _ = await start(connector)
    async with client.ws_connect("/ws/u1?is_audio=true&events=1") as ws:
        session = await receive_json(ws)
        await ws.send_str(json.dumps({"mime_type": "text/plain", "data": "hi"}))
        got = [await receive_json(ws) for _ in range(5)]
    assert session["type"] == "session"
    assert session["session_id"] == connector.sessions[0].session_id
    assert session["mode"] == "audio"
    assert got[0] == {"type": "transcript", "role": "user", "text": "hi", "final": True}
    assert got[1]["mime_type"] == "audio/pcm"
    assert got[2] == {"type": "transcript", "role": "agent", "text": "You said", "final": False}
    assert got[3] == {"type": "transcript", "role": "agent", "text": "You said hi", "final": True}
    assert got[4] == {"type": "turn_complete"}


async def test_session_id_continues_a_known_conversation(start: Any) -> None:
    connector = FakeAgentConnector()
    client, _ = await start(connector)
    async with client.ws_connect("/ws/u1?events=1") as ws:
        first = (await receive_json(ws))["session_id"]
    async with client.ws_connect(f"/ws/u1?events=1&session_id={first}") as ws:
        second = (await receive_json(ws))["session_id"]
    assert second == first
    assert len(connector.sessions) == 2
    await until_released(connector)


async def test_unknown_session_gets_an_error_then_close_4404(start: Any) -> None:
    client, _ = await start(FakeAgentConnector())
    async with client.ws_connect("/ws/u1?session_id=nope") as ws:
        error = await receive_json(ws)
        closing = await asyncio.wait_for(ws.receive(), 5)
    assert error["code"] == "unknown_session"
    assert error["fatal"] is True
    assert closing.type is WSMsgType.CLOSE
    assert ws.close_code == 4404


@pytest.mark.parametrize(
    "path", ["/ws/bad%20user?is_audio=true", "/ws/u1?is_audio=maybe", "/ws/u1?session_id=a/b"]
)
async def test_bad_path_or_query_is_400_before_upgrade(start: Any, path: str) -> None:
    connector = FakeAgentConnector()
    client, _ = await start(connector)
    response = await client.get(path, headers=UPGRADE_HEADERS)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_request"
    assert connector.sessions == []


async def test_at_capacity_closes_4503_and_the_open_socket_carries_on(start: Any) -> None:
    connector = FakeAgentConnector()
    client, transport = await start(connector, max_sockets=1)
    async with client.ws_connect("/ws/u1") as first:
        await first.send_str(json.dumps({"mime_type": "text/plain", "data": "a"}))
        await receive_json(first)
        async with client.ws_connect("/ws/u2") as second:
            error = await receive_json(second)
            await asyncio.wait_for(second.receive(), 5)
        await first.send_str(json.dumps({"mime_type": "text/plain", "data": "b"}))
        while (await receive_json(first)).get("turn_complete") is not True:
            pass
        assert transport.open_sockets == 1
    assert error["code"] == "at_capacity"
    assert second.close_code == 4503
    assert len(connector.sessions) == 1
    await until_released(connector)
    assert transport.open_sockets == 0


async def test_agent_unavailable_closes_4503(start: Any) -> None:
    client, _ = await start(FakeAgentConnector(fail_with=AgentUnavailable("no agent")))
    async with client.ws_connect("/ws/u1?is_audio=true") as ws:
        error = await receive_json(ws)
        await asyncio.wait_for(ws.receive(), 5)
    assert error == {"type": "error", "code": "agent_unavailable", "message": "no agent",
                     "fatal": True}  # fmt: skip
    assert ws.close_code == 4503


async def test_fatal_agent_error_is_reported_then_closes_1011(start: Any) -> None:
    connector = FakeAgentConnector()
    client, _ = await start(connector)
    async with client.ws_connect("/ws/u1") as ws:
        await ws.send_str(json.dumps({"mime_type": "text/plain", "data": "fail"}))
        error = await receive_json(ws)
        closing = await asyncio.wait_for(ws.receive(), 5)
    assert error == {"type": "error", "code": "agent_error", "message": "the agent failed",
                     "fatal": True}  # fmt: skip
    assert closing.type is WSMsgType.CLOSE
    assert ws.close_code == 1011
    await until_released(connector)


async def test_interrupted_is_the_seed_flag_pair(start: Any) -> None:
    client, _ = await start(FakeAgentConnector())
    async with client.ws_connect("/ws/u1?is_audio=true") as ws:
        await ws.send_str(json.dumps({"mime_type": "text/plain", "data": "interrupt"}))
        assert await receive_json(ws) == {"turn_complete": False, "interrupted": True}


async def test_agent_ending_the_session_closes_the_socket_normally(start: Any) -> None:
    connector = FakeAgentConnector()
    client, _ = await start(connector)
    async with client.ws_connect("/ws/u1") as ws:
        await ws.send_str(json.dumps({"mime_type": "text/plain", "data": "hang up"}))
        closing = await asyncio.wait_for(ws.receive(), 5)
    assert closing.type is WSMsgType.CLOSE
    assert ws.close_code == 1000
    await until_released(connector)


async def test_a_client_that_vanishes_releases_the_session(start: Any) -> None:
    connector = FakeAgentConnector()
    client, transport = await start(connector)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"GET /ws/u1?is_audio=true HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    status = await asyncio.wait_for(reader.readline(), 5)
    for _ in range(100):
        if connector.open_sessions == 1:
            break
        await asyncio.sleep(0.02)
    assert status.startswith(b"HTTP/1.1 101")
    assert connector.open_sessions == 1
    writer.transport.abort()  # the TCP connection drops without a close frame
    await until_released(connector)
    assert transport.open_sockets == 0
