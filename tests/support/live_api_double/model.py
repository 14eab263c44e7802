"""The double's scripted models: turn-taking, stalls, nudges and tool calls as 3.x does them.

A behaviour is an async function of `LiveConnection`, run for the connection's life.
`conversational` answers every user turn with a short tone; `tool_calling(...)`
answers every user turn by calling one tool, the way the generation calls it:

- BLOCKING (3.1 always; 3.8 when declared): `toolCall`, then nothing until the
  `toolResponse` (3.x "does not emit turn_complete until it receives the tool
  response", ADK 2.13), then the result spoken and `turnComplete`;
- NON_BLOCKING (3.8's default): `toolCall`, then at once a short filler reply with
  `turnComplete`; the response's `scheduling` then decides: INTERRUPT stops the filler
  if it is still speaking (`interrupted`) and speaks the result now; WHEN_IDLE (also
  when absent) speaks it once the filler has finished; SILENT says nothing.

Both follow the stall plan (`stalls`) and answer nudges: a nudge delivers what the
model owes (a stalled turn or tool result, a reply owed from a connection cut mid-reply,
the last user turn of a replayed history) and is otherwise only recorded.

Imports only the standard library and the double's own modules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from tests.support.live_api_double.connection import LiveConnection
from tests.support.live_api_double.generations import ToolBehavior
from tests.support.live_api_double.inputs import ClientInput, Nudge, ToolResult, UserTurn
from tests.support.live_api_double.stalls import OwedReply

Behaviour = Callable[[LiveConnection], Coroutine[Any, Any, None]]


class ScriptedModel:
    """The turn-taking every scripted model shares, on one connection.

    Speaks one reply at a time; only a NON_BLOCKING filler is spoken in the
    background (a task of the model's task group, so it ends with the connection).
    """

    def __init__(self, conn: LiveConnection, *, audio_s: float = 0.6) -> None:
        self.conn = conn
        self.audio_s = audio_s
        #: What a nudge delivers after an `empty_turn`, `silent` or `after_tool` stall.
        self._pending: Callable[[], Awaitable[None]] | None = None
        #: After a `mid_reply` stall the connection ignores every input.
        self._wedged = False
        self._cut_next = False
        self._transcribed: UserTurn | None = None
        self._speech: asyncio.Task[bool] | None = None
        self._stop = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None

    async def run(self) -> None:
        await self.conn.issue_handle()
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            while True:
                await self.on_input(await self.conn.inputs.get())

    async def on_input(self, event: ClientInput) -> None:
        if self._wedged:
            return
        if isinstance(event, UserTurn):
            await self.on_turn(event)
        elif isinstance(event, Nudge):
            await self.on_nudge()
        else:
            await self.on_tool_result(event)

    async def on_turn(self, turn: UserTurn) -> None:
        await self._deliver_owed()
        self._pending = None  # a new turn supersedes a stalled one
        stall = self.conn.take_stall("turn")
        if stall in ("empty_turn", "silent"):
            # As reported (python-genai #2117, cookbook #1346): the turn is heard and
            # transcribed, then nothing comes, or a turnComplete with no content.
            await self._transcribe(turn)
        if stall == "empty_turn":
            await self.conn.send({"serverContent": {"turnComplete": True}})
        if stall in ("empty_turn", "silent"):
            self._pending = lambda: self.answer(turn)
            return
        self._cut_next = stall == "mid_reply"
        await self.answer(turn)

    async def _transcribe(self, turn: UserTurn) -> None:
        """Send a spoken turn's one final input transcription now (not with a reply)."""
        if turn.kind == "audio" and turn is not self._transcribed:
            self._transcribed = turn
            message = {"inputTranscription": {"text": turn.text, "finished": True}}
            await self.conn.send({"serverContent": message})

    async def on_nudge(self) -> None:
        if await self._deliver_owed():
            return
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending()
        elif (turn := self.conn.take_history_turn()) is not None:
            await self.answer(turn)

    async def on_tool_result(self, result: ToolResult) -> None:
        """A model without tools ignores responses (the connection recorded them)."""

    async def answer(self, turn: UserTurn) -> None:
        """Say "reply N", N counting the model's replies in the conversation (so a
        resumed session goes on counting)."""
        replies = sum(role == "model" for role, _ in self.conn.history)
        await self.speak(f"reply {replies + 1}", turn)

    async def speak(
        self,
        text: str,
        turn: UserTurn | None = None,
        audio_s: float | None = None,
        *,
        background: bool = False,
    ) -> None:
        """Say `text` once the current reply has finished, with `turn`'s final input
        transcription if it was spoken and not yet transcribed (one per user turn)."""
        await self._finish_speech()
        heard = None
        if turn is not None and turn.kind == "audio" and turn is not self._transcribed:
            heard, self._transcribed = turn.text, turn
        saying = self._say(text, turn, self.audio_s if audio_s is None else audio_s, heard)
        if background and self._tasks is not None:
            name = f"live-double/{self.conn.index}/speech"
            self._speech = self._tasks.create_task(saying, name=name)
        else:
            await saying

    async def interrupt_speech(self) -> None:
        """Stop the reply being spoken, if any, and tell the client `interrupted`."""
        speech, self._speech = self._speech, None
        if speech is None or speech.done():
            return
        self._stop.set()
        try:
            finished = await speech
        finally:
            self._stop.clear()
        if not finished:
            await self.conn.interrupted()

    async def _say(
        self, text: str, turn: UserTurn | None, audio_s: float, heard: str | None
    ) -> bool:
        if not self._cut_next:
            return await self.conn.reply(text, audio_s, input_transcription=heard, stop=self._stop)
        self._cut_next, self._wedged = False, True
        self.conn.owe(OwedReply(turn, text, audio_s))
        await self.conn.reply(text, audio_s, cut_after_s=audio_s / 2, input_transcription=heard)
        return False

    async def _finish_speech(self) -> None:
        speech, self._speech = self._speech, None
        if speech is not None:
            await speech

    async def _deliver_owed(self) -> bool:
        """Speak the reply a connection cut mid-reply owed, in full (its input
        transcription went out on that connection)."""
        owed = self.conn.take_owed()
        if owed is None:
            return False
        await self.speak(owed.text, None, owed.audio_s)
        return True


class ToolCallingModel(ScriptedModel):
    """Answers every user turn by calling tool `name` (see the module docstring)."""

    def __init__(
        self,
        conn: LiveConnection,
        name: str,
        args: dict[str, Any],
        result_text: Callable[[dict[str, Any]], str],
        *,
        filler: str = "let me check",
        filler_audio_s: float = 1.0,
        audio_s: float = 0.6,
    ) -> None:
        super().__init__(conn, audio_s=audio_s)
        self.name, self.args, self.result_text = name, args, result_text
        self.filler, self.filler_audio_s = filler, filler_audio_s
        self._open: dict[str, tuple[ToolBehavior, UserTurn | None]] = {}

    async def answer(self, turn: UserTurn) -> None:
        behavior = self.conn.declared_behavior(self.name)
        call_id = await self.conn.tool_call(self.name, self.args)
        self._open[call_id] = (behavior, turn)
        if behavior == "NON_BLOCKING":
            await self.speak(self.filler, turn, self.filler_audio_s, background=True)

    async def on_tool_result(self, result: ToolResult) -> None:
        behavior, turn = self._open.pop(result.id, (self.conn.declared_behavior(result.name), None))
        # "Only applicable to NON_BLOCKING function calls, is ignored otherwise."
        scheduling = result.effective_scheduling if behavior == "NON_BLOCKING" else "WHEN_IDLE"
        if scheduling == "SILENT":
            return
        text = self.result_text(result.response)
        if self.conn.take_stall("tool") == "after_tool":
            self._pending = lambda: self.speak(text, turn)
            return
        if scheduling == "INTERRUPT":
            await self.interrupt_speech()
        await self.speak(text, turn)


async def conversational(conn: LiveConnection) -> None:
    """The default model: a handle at once, then a short tone reply to every turn."""
    await ScriptedModel(conn).run()


def tool_calling(
    name: str,
    args: dict[str, Any],
    result_text: Callable[[dict[str, Any]], str],
    *,
    filler: str = "let me check",
    filler_audio_s: float = 1.0,
    audio_s: float = 0.6,
) -> Behaviour:
    """A model that answers every user turn by calling `name` with `args` and then
    speaks `result_text(response)`; `filler` is what it says meanwhile (NON_BLOCKING)."""

    async def behaviour(conn: LiveConnection) -> None:
        model = ToolCallingModel(
            conn,
            name,
            args,
            result_text,
            filler=filler,
            filler_audio_s=filler_audio_s,
            audio_s=audio_s,
        )
        await model.run()

    return behaviour
