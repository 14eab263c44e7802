"""The Live API double: a TLS websocket server speaking BidiGenerateContent.

Wire facts it reproduces (google-genai 2.34, `live.py` / `_live_converters.py`):
- path `/ws/google.ai.generativelanguage.{v1alpha|v1beta}.GenerativeService.BidiGenerateContent`,
  API key in the `x-goog-api-key` header; any other path gets HTTP 404;
- the client's first frame is `{"setup": {"model": "models/...", ...}}` (camelCase
  inside), answered with `{"setupComplete": {}}`;
- client frames: `realtime_input` / `realtimeInput` with `mediaChunks[]` or `audio`
  (URL-safe base64), `client_content` / `clientContent` with `turns` and
  `turn_complete` / `turnComplete`, `tool_response` / `toolResponse`;
- server frames: `serverContent`, `toolCall`, `goAway`, `sessionResumptionUpdate`,
  `usageMetadata`, all camelCase JSON;
- a bad API key is refused after `setup` with close 1007 "API key not valid. Please
  pass a valid API key."; an unknown model with close 1008 "models/X is not found for
  API version v1alpha, or is not supported for bidiGenerateContent. Call ListMod..."
  (the reason is cut at the 123 bytes a close frame allows). Both as reported from
  the real service (adk-python #3964, samples of google-gemini client logs).

Each connection runs a behaviour (an async function of `LiveConnection`) chosen by
its index; `conversational` is the default. Records are kept for assertions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers

from tests.support.live_api_double.audio import OUTPUT_MIME, OUTPUT_RATE_HZ, EnergyVad, tone
from tests.support.live_api_double.certs import SelfSignedCert
from tests.support.live_api_double.wire import (
    BAD_KEY_CLOSE,
    DEFAULT_MODELS,
    PATHS,
    b64decode,
    check_path,
    strip_audio,
    unknown_model_close,
)


@dataclass(frozen=True, slots=True)
class UserTurn:
    """A caller turn the double noticed: typed text, or speech found by energy."""

    kind: str  # "text" | "audio"
    text: str
    audio_s: float = 0.0


Behaviour = Callable[["LiveConnection"], Awaitable[None]]


@dataclass(eq=False)
class LiveConnection:
    """One accepted websocket: what it received, and the primitives to script the model."""

    index: int
    double: LiveApiDouble
    ws: ServerConnection
    api_version: str
    api_key: str | None
    setup: dict[str, Any] = field(default_factory=dict)
    #: The handle the client asked to resume (setup.sessionResumption.handle).
    resumed_handle: str | None = None
    #: The double's memory of the conversation: (role, text); restored on resumption.
    history: list[tuple[str, str]] = field(default_factory=list)
    #: Turns received as context, not to answer (history replayed by the client).
    history_received: list[dict[str, Any]] = field(default_factory=list)
    audio_in: bytearray = field(default_factory=bytearray)
    #: (monotonic time, bytes) of every caller audio chunk.
    audio_log: list[tuple[float, int]] = field(default_factory=list)
    contents: list[dict[str, Any]] = field(default_factory=list)
    tool_responses: list[dict[str, Any]] = field(default_factory=list)
    #: Every client frame in order, audio payloads replaced by their byte count.
    received: list[dict[str, Any]] = field(default_factory=list)
    #: Every server frame sent, audio payloads replaced by their byte count.
    sent: list[dict[str, Any]] = field(default_factory=list)
    handles_issued: list[str] = field(default_factory=list)
    audio_out_bytes: int = 0
    turns: asyncio.Queue[UserTurn] = field(default_factory=asyncio.Queue)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _vad: EnergyVad = field(default_factory=EnergyVad)

    @property
    def model(self) -> str:
        return str(self.setup.get("model", ""))

    @property
    def audio_in_s(self) -> float:
        return len(self.audio_in) / 32_000

    # -- sending -------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(strip_audio(message))
        await self.ws.send(json.dumps(message))

    @property
    def resumption_on(self) -> bool:
        """Whether the client asked for resumption (else the service sends no updates)."""
        return "sessionResumption" in self.setup

    async def issue_handle(self) -> str | None:
        """Snapshot the conversation under a new handle and tell the client."""
        if not self.resumption_on:
            return None
        handle = f"h{self.double.next_handle()}"
        self.double.sessions[handle] = list(self.history)
        self.handles_issued.append(handle)
        await self.send({"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}})
        return handle

    async def not_resumable(self) -> None:
        """What the service sends mid-generation: no handle, not resumable."""
        if self.resumption_on:
            await self.send({"sessionResumptionUpdate": {"resumable": False}})

    async def go_away(self, time_left: str = "50s") -> None:
        await self.send({"goAway": {"timeLeft": time_left}})

    async def send_audio(self, pcm: bytes, chunk_s: float = 0.04, speed: float = 2.0) -> None:
        """Send 24 kHz PCM in `chunk_s` pieces at `speed` x real time."""
        step = round(chunk_s * OUTPUT_RATE_HZ) * 2
        for start in range(0, len(pcm), step):
            chunk = pcm[start : start + step]
            data = base64.b64encode(chunk).decode()
            part = {"inlineData": {"mimeType": OUTPUT_MIME, "data": data}}
            await self.send({"serverContent": {"modelTurn": {"parts": [part]}}})
            self.audio_out_bytes += len(chunk)
            await asyncio.sleep(chunk_s / speed)

    async def reply(
        self, text: str, audio_s: float = 0.6, *, abort_after_s: float | None = None
    ) -> None:
        """Answer a turn: transcription and tone, then generationComplete, turnComplete,
        usage and a new handle. With `abort_after_s`, drop the TCP connection that far
        into the audio (after a not-resumable update, as mid-generation)."""
        await self.not_resumable()
        await self.send({"serverContent": {"outputTranscription": {"text": text}}})
        pcm = tone(audio_s)
        if abort_after_s is not None:
            await self.send_audio(pcm[: round(abort_after_s * OUTPUT_RATE_HZ) * 2])
            await self.abort()
            return
        await self.send_audio(pcm)
        self.history.append(("model", text))
        await self.send({"serverContent": {"generationComplete": True}})
        await self.send({"serverContent": {"turnComplete": True}})
        usage = {"promptTokenCount": 10, "responseTokenCount": 5, "totalTokenCount": 15}
        await self.send({"usageMetadata": usage})
        await self.issue_handle()

    async def tool_call(self, name: str, args: dict[str, Any]) -> str:
        call_id = f"call-{self.double.next_handle()}"
        calls = [{"id": call_id, "name": name, "args": args}]
        await self.send({"toolCall": {"functionCalls": calls}})
        return call_id

    async def interrupted(self) -> None:
        await self.send({"serverContent": {"interrupted": True}})

    async def abort(self) -> None:
        """Drop the TCP connection without a close frame (the client sees 1006)."""
        transport = self.ws.transport
        if transport is not None:
            transport.abort()
        await self.closed.wait()

    async def close(self, code: int, reason: str = "") -> None:
        await self.ws.close(code, reason)

    # -- waiting -------------------------------------------------------------
    async def wait_user_turn(self, timeout_s: float = 10.0) -> UserTurn:
        return await asyncio.wait_for(self.turns.get(), timeout_s)

    async def wait_audio_s(self, seconds: float, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.audio_in_s < seconds:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.audio_in_s:.2f} s of caller audio")
            await asyncio.sleep(0.02)

    # -- receiving -----------------------------------------------------------
    def on_frame(self, message: dict[str, Any]) -> None:
        self.received.append(strip_audio(message))
        realtime = message.get("realtime_input") or message.get("realtimeInput")
        content = message.get("client_content") or message.get("clientContent")
        tool = message.get("tool_response") or message.get("toolResponse")
        if realtime is not None:
            self._on_realtime(realtime)
        if content is not None:
            self._on_content(content)
        if tool is not None:
            self.tool_responses.append(tool)

    def _on_realtime(self, realtime: dict[str, Any]) -> None:
        blobs = list(realtime.get("mediaChunks") or realtime.get("media_chunks") or [])
        if realtime.get("audio"):
            blobs.append(realtime["audio"])
        for blob in blobs:
            mime = blob.get("mimeType") or blob.get("mime_type") or ""
            if not mime.startswith("audio/pcm"):
                continue
            pcm = b64decode(blob.get("data", ""))
            self.audio_in += pcm
            self.audio_log.append((time.monotonic(), len(pcm)))
            for speech_s in self._vad.feed(pcm):
                self._user_turn(UserTurn("audio", f"<speech {speech_s:.2f} s>", speech_s))
        if realtime.get("text"):
            self._user_turn(UserTurn("text", str(realtime["text"])))

    def _on_content(self, content: dict[str, Any]) -> None:
        """Turns with turnComplete are a user turn to answer; without it (or as the
        first content under `initialHistoryInClientContent`) they are context only."""
        self.contents.append(content)
        turns = content.get("turns") or []
        texts = [
            (t.get("role", "user"), p["text"])
            for t in turns
            for p in t.get("parts", [])
            if p.get("text")
        ]
        history_cfg = self.setup.get("historyConfig") or {}
        first = len(self.contents) == 1 and not self.audio_log
        complete = content.get("turnComplete", content.get("turn_complete", False))
        if not complete or (history_cfg.get("initialHistoryInClientContent") and first):
            self.history_received.extend(turns)
            self.history.extend(texts)
            return
        if texts:
            self._user_turn(UserTurn("text", " ".join(text for _, text in texts)))

    def _user_turn(self, turn: UserTurn) -> None:
        self.history.append(("user", turn.text))
        self.turns.put_nowait(turn)


async def conversational(conn: LiveConnection) -> None:
    """The default model: a handle at once, then a short tone reply to every turn."""
    await conn.issue_handle()
    for n in itertools.count(1):
        turn = await conn.turns.get()
        if turn.kind == "audio":
            await conn.send({"serverContent": {"inputTranscription": {"text": turn.text}}})
        await conn.reply(f"reply {n}", audio_s=0.6)


class LiveApiDouble:
    """The server. `async with LiveApiDouble(cert) as double:` then point a client at
    `double.base_url`, trusting `cert`. Set `behaviours[i]` to script connection i."""

    def __init__(
        self,
        cert: SelfSignedCert,
        *,
        accepted_api_keys: frozenset[str] | None = None,
        known_models: frozenset[str] = DEFAULT_MODELS,
    ) -> None:
        self.cert = cert
        #: None accepts any key; otherwise others are refused like a bad key.
        self.accepted_api_keys = accepted_api_keys
        self.known_models = known_models
        #: When set, every new connection is refused with this close after `setup`.
        self.refuse_all: tuple[int, str] | None = None
        self.behaviours: dict[int, Behaviour] = {}
        self.default_behaviour: Behaviour = conversational
        self.connections: list[LiveConnection] = []
        #: Conversation snapshots by resumption handle (shared by all connections).
        self.sessions: dict[str, list[tuple[str, str]]] = {}
        self.refused: list[tuple[int, str]] = []
        self.new_connection = asyncio.Condition()
        self._counter = itertools.count(1)
        self._server: Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def next_handle(self) -> int:
        return next(self._counter)

    async def __aenter__(self) -> LiveApiDouble:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            ssl=self.cert.server_context(),
            process_request=check_path,
            ping_interval=None,
            max_size=16 * 1024 * 1024,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def wait_connections(self, count: int, timeout_s: float = 10.0) -> LiveConnection:
        """Wait until `count` connections completed setup; return the last one."""
        async with asyncio.timeout(timeout_s), self.new_connection:
            await self.new_connection.wait_for(lambda: len(self.connections) >= count)
        return self.connections[count - 1]

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        headers: Headers = ws.request.headers
        conn = LiveConnection(
            index=len(self.connections),
            double=self,
            ws=ws,
            api_version=PATHS[ws.request.path.split("?")[0]],
            api_key=headers.get("x-goog-api-key"),
        )
        try:
            setup = json.loads(await ws.recv())["setup"]
        except (websockets.ConnectionClosed, KeyError, ValueError):
            await ws.close(1007, "Invalid JSON payload received.")
            return
        refusal = self._refusal(conn.api_key, str(setup.get("model", "")), conn.api_version)
        if refusal is not None:
            self.refused.append(refusal)
            await ws.close(*refusal)
            return
        await self._serve(conn, setup)

    def _refusal(self, key: str | None, model: str, version: str) -> tuple[int, str] | None:
        if self.refuse_all is not None:
            return self.refuse_all
        if not key or (self.accepted_api_keys is not None and key not in self.accepted_api_keys):
            return BAD_KEY_CLOSE
        if model.removeprefix("models/") not in self.known_models:
            return unknown_model_close(model, version)
        return None

    async def _serve(self, conn: LiveConnection, setup: dict[str, Any]) -> None:
        conn.setup = setup
        conn.resumed_handle = (setup.get("sessionResumption") or {}).get("handle")
        if conn.resumed_handle in self.sessions:
            conn.history = list(self.sessions[conn.resumed_handle])
        await conn.send({"setupComplete": {}})
        async with self.new_connection:
            self.connections.append(conn)
            self.new_connection.notify_all()
        behaviour = self.behaviours.get(conn.index, self.default_behaviour)
        script = asyncio.ensure_future(behaviour(conn))
        try:
            async for raw in conn.ws:
                conn.on_frame(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            conn.closed.set()
            script.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await script
