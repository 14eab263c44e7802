"""One accepted Live connection: what it received, and the primitives to script the model.

Client frames (google-genai 2.34 spellings, both accepted): `realtime_input` with
`audio` or `text`, `client_content` with `turns` / `turnComplete`, `tool_response`
with `functionResponses`. Each frame is recorded, then queued as what it means
(`inputs.UserTurn`, `inputs.Nudge`, `inputs.ToolResult`) for the behaviour; a frame
the 3.x models refuse (`mediaChunks`) makes `on_frame` return the close to send.

Imports the standard library, websockets and the double's own modules; the server
(`server.LiveApiDouble`) only for typing.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection

from tests.support.live_api_double import generations, inputs
from tests.support.live_api_double.audio import OUTPUT_RATE_HZ, EnergyVad, tone
from tests.support.live_api_double.inputs import ClientInput, Nudge, ToolResult, UserTurn
from tests.support.live_api_double.speech import CHUNK_S, SPEED, audio_part, speech_contents
from tests.support.live_api_double.stalls import OwedReply, StallKind, StallPoint, check_kind
from tests.support.live_api_double.stalls import take_stall as take_from_plans
from tests.support.live_api_double.wire import MEDIA_CHUNKS_CLOSE, b64decode, has, strip_audio
from tests.support.live_api_double.wire import field as wire_field

if TYPE_CHECKING:
    from tests.support.live_api_double.server import LiveApiDouble

_USAGE = {"promptTokenCount": 10, "responseTokenCount": 5, "totalTokenCount": 15}


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
    #: 3.1's `thinkingConfig.thinkingLevel` as sent ("LOW", ...); None: not sent.
    thinking_level: str | None = None
    #: A reply cut mid-way on the connection this one resumed from (`mid_reply`).
    owed: OwedReply | None = None
    #: The double's memory of the conversation: (role, text); restored on resumption.
    history: list[tuple[str, str]] = field(default_factory=list)
    #: Turns received as context, not to answer (history replayed by the client).
    history_received: list[dict[str, Any]] = field(default_factory=list)
    audio_in: bytearray = field(default_factory=bytearray)
    #: (monotonic time, bytes) of every caller audio chunk.
    audio_log: list[tuple[float, int]] = field(default_factory=list)
    contents: list[dict[str, Any]] = field(default_factory=list)
    #: Every `toolResponse` body as received.
    tool_responses: list[dict[str, Any]] = field(default_factory=list)
    #: Every function response, with its `scheduling` as sent.
    tool_results: list[ToolResult] = field(default_factory=list)
    #: Every request for a reply without words (`inputs.Nudge`).
    nudges: list[Nudge] = field(default_factory=list)
    #: Stalls still to serve on this connection, before the double's `stall_plan`.
    stall_plan: list[StallKind] = field(default_factory=list)
    #: Stalls served, in order.
    stalls_served: list[StallKind] = field(default_factory=list)
    #: The close the double sent mid-session, if any.
    server_close: tuple[int, str] | None = None
    #: Every client frame in order, audio payloads replaced by their byte count.
    received: list[dict[str, Any]] = field(default_factory=list)
    #: Every server frame sent, audio payloads replaced by their byte count.
    sent: list[dict[str, Any]] = field(default_factory=list)
    handles_issued: list[str] = field(default_factory=list)
    audio_out_bytes: int = 0
    #: What the client's frames meant, in order, for the behaviour. Unbounded on
    #: purpose: a test's inputs are few, and dropping one would falsify the script.
    inputs: asyncio.Queue[ClientInput] = field(default_factory=asyncio.Queue)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _vad: EnergyVad = field(default_factory=EnergyVad)
    _history_turn: UserTurn | None = None

    @property
    def model(self) -> str:
        return str(self.setup.get("model", ""))

    @property
    def generation(self) -> generations.Generation:
        return self.double.generation

    @property
    def audio_in_s(self) -> float:
        return len(self.audio_in) / 32_000

    @property
    def resumption_on(self) -> bool:
        """Whether the client asked for resumption (else the service sends no updates)."""
        return has(self.setup, "sessionResumption")

    def start(self, setup: dict[str, Any]) -> None:
        """Take an accepted setup; restore the session behind its resumption handle."""
        self.setup = setup
        if self.generation == "3.1":
            self.thinking_level = generations.thinking_level(setup)
        self.resumed_handle = wire_field(wire_field(setup, "sessionResumption") or {}, "handle")
        if self.resumed_handle is None:
            return
        self.history = list(self.double.sessions.get(self.resumed_handle, []))
        self.owed = self.double.owed_replies.get(self.resumed_handle)
        if self.owed is not None and self.owed.turn is not None:
            self.history.append(("user", self.owed.turn.text))  # the server kept the turn

    def declared_behavior(self, name: str) -> generations.ToolBehavior:
        return generations.declared_behavior(self.generation, self.setup, name)

    # -- stalls ----------------------------------------------------------------
    def stall_next(self, kind: str) -> None:
        """Serve stall `kind` on this connection (before the double's plan)."""
        self.stall_plan.append(check_kind(kind))

    def take_stall(self, point: StallPoint) -> StallKind | None:
        kind = take_from_plans((self.stall_plan, self.double.stall_plan), point)
        if kind is not None:
            self.stalls_served.append(kind)
        return kind

    def owe(self, owed: OwedReply) -> None:
        """Leave `owed` to a connection resuming from this one's newest handle."""
        handle = self.handles_issued[-1] if self.handles_issued else self.resumed_handle
        if handle is not None:
            self.double.owed_replies[handle] = owed

    def take_owed(self) -> OwedReply | None:
        owed, self.owed = self.owed, None
        if owed is not None:
            for handle in [h for h, o in self.double.owed_replies.items() if o is owed]:
                del self.double.owed_replies[handle]
        return owed

    def take_history_turn(self) -> UserTurn | None:
        """The last user turn of a replayed history sent with turnComplete, once: 3.x
        "only starts generating once it receives new user input" (ADK 2.13)."""
        turn, self._history_turn = self._history_turn, None
        return turn

    # -- sending ---------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(strip_audio(message))
        await self.ws.send(json.dumps(message))

    async def issue_handle(self) -> str | None:
        """Snapshot the conversation under a new handle and tell the client."""
        if not self.resumption_on:
            return None
        handle = f"h{self.double.next_handle()}"
        self.double.sessions[handle] = list(self.history)
        if self.owed is not None:
            self.double.owed_replies[handle] = self.owed
        self.handles_issued.append(handle)
        await self.send({"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}})
        return handle

    async def not_resumable(self) -> None:
        """What the service sends mid-generation: no handle, not resumable."""
        if self.resumption_on:
            await self.send({"sessionResumptionUpdate": {"resumable": False}})

    async def go_away(self, time_left: str = "50s") -> None:
        await self.send({"goAway": {"timeLeft": time_left}})

    async def send_audio(self, pcm: bytes, chunk_s: float = CHUNK_S, speed: float = SPEED) -> None:
        """Send 24 kHz PCM alone in `chunk_s` pieces at `speed` x real time."""
        step = round(chunk_s * OUTPUT_RATE_HZ) * 2
        for start in range(0, len(pcm), step):
            chunk = pcm[start : start + step]
            await self.send({"serverContent": {"modelTurn": {"parts": [audio_part(chunk)]}}})
            self.audio_out_bytes += len(chunk)
            await asyncio.sleep(chunk_s / speed)

    async def reply(
        self,
        text: str,
        audio_s: float = 0.6,
        *,
        abort_after_s: float | None = None,
        cut_after_s: float | None = None,
        input_transcription: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> bool:
        """Answer as 3.x does: a not-resumable update; the first audio chunk with the
        transcription's first words (and `input_transcription`, the user turn's final
        one, if given) in one serverContent; the rest word by word along the audio; then
        generationComplete, turnComplete, usage and a new handle. True if it got there.

        `abort_after_s`: drop the TCP connection that far into the audio (mid-generation);
        `cut_after_s`: stop sending there, leaving the turn open (a mid-reply stall);
        `stop`: once set, stop after the current chunk (the caller says `interrupted`).
        """
        await self.not_resumable()
        cut_s = abort_after_s if abort_after_s is not None else cut_after_s
        contents = speech_contents(text, tone(audio_s), input_transcription, cut_s)
        for content, audio_bytes in contents:
            if stop is not None and stop.is_set():
                return False
            await self.send({"serverContent": content})
            self.audio_out_bytes += audio_bytes
            await asyncio.sleep(CHUNK_S / SPEED)
        if abort_after_s is not None:
            await self.abort()
        if cut_s is not None:
            return False
        self.history.append(("model", text))
        await self.send({"serverContent": {"generationComplete": True}})
        await self.send({"serverContent": {"turnComplete": True}})
        await self.send({"usageMetadata": _USAGE})
        await self.issue_handle()
        return True

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
        self.server_close = (code, reason)
        await self.ws.close(code, reason)

    # -- waiting ---------------------------------------------------------------
    async def next_input(self, timeout_s: float | None = None) -> ClientInput:
        return await asyncio.wait_for(self.inputs.get(), timeout_s)

    async def wait_user_turn(self, timeout_s: float = 10.0) -> UserTurn:
        """The next user turn; nudges and tool results before it are skipped (they
        stay recorded in `nudges` and `tool_results`)."""
        async with asyncio.timeout(timeout_s):
            while not isinstance(event := await self.inputs.get(), UserTurn):
                pass
            return event

    async def wait_audio_s(self, seconds: float, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.audio_in_s < seconds:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.audio_in_s:.2f} s of caller audio")
            await asyncio.sleep(0.02)

    # -- receiving -------------------------------------------------------------
    def on_frame(self, message: dict[str, Any]) -> tuple[int, str] | None:
        """Record a client frame and queue what it means; return a close to send if
        the model refuses the frame."""
        self.received.append(strip_audio(message))
        realtime = wire_field(message, "realtimeInput")
        content = wire_field(message, "clientContent")
        tool = wire_field(message, "toolResponse")
        if realtime is not None:
            if has(realtime, "mediaChunks"):
                return MEDIA_CHUNKS_CLOSE  # 3.x wants `audio` (adk-python #5075)
            self._on_realtime(realtime)
        if content is not None:
            self._on_content(content)
        if tool is not None:
            self.tool_responses.append(tool)
            for result in inputs.tool_results(tool):
                self.tool_results.append(result)
                self.inputs.put_nowait(result)
        return None

    def _on_realtime(self, realtime: dict[str, Any]) -> None:
        blob = wire_field(realtime, "audio")
        if blob and str(wire_field(blob, "mimeType") or "").startswith("audio/pcm"):
            pcm = b64decode(blob.get("data", ""))
            self.audio_in += pcm
            self.audio_log.append((time.monotonic(), len(pcm)))
            for speech_s in self._vad.feed(pcm):
                self._user_turn(UserTurn("audio", f"<speech {speech_s:.2f} s>", speech_s))
        if has(realtime, "text"):
            text = str(wire_field(realtime, "text") or "")
            if inputs.is_nudge_text(text):
                self._nudge(Nudge("realtime_text", text))
            else:
                self._user_turn(UserTurn("text", text))

    def _on_content(self, content: dict[str, Any]) -> None:
        """Turns with turnComplete are a user turn to answer; without it (or as the
        first content under `initialHistoryInClientContent`) they are context only;
        turnComplete with no turns asks for a reply (a nudge)."""
        self.contents.append(content)
        turns = wire_field(content, "turns") or []
        complete = bool(wire_field(content, "turnComplete"))
        if complete and not turns:
            self._nudge(Nudge("turn_complete"))
            return
        texts = [
            (t.get("role", "user"), p["text"])
            for t in turns
            for p in t.get("parts", [])
            if p.get("text")
        ]
        history_cfg = wire_field(self.setup, "historyConfig") or {}
        first = len(self.contents) == 1 and not self.audio_log
        if not complete or (wire_field(history_cfg, "initialHistoryInClientContent") and first):
            self.history_received.extend(turns)
            self.history.extend(texts)
            if complete and texts and texts[-1][0] == "user":
                self._history_turn = UserTurn("text", texts[-1][1])
            return
        if texts:
            self._user_turn(UserTurn("text", " ".join(text for _, text in texts)))

    def _user_turn(self, turn: UserTurn) -> None:
        self.history.append(("user", turn.text))
        self.inputs.put_nowait(turn)

    def _nudge(self, nudge: Nudge) -> None:
        self.nudges.append(nudge)
        self.inputs.put_nowait(nudge)
