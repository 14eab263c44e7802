"""When a live model has gone quiet where it should speak, and what to do about it.

Users of every framework report the same stalls on Gemini 3.x Live (pipecat #4366,
python-genai #2117, cookbook #1346; research notes in docs/gemini-live.md): a
`turn_complete` that carries nothing, silence after a tool result until the caller
speaks again, a reply that stops mid-sentence, no reply at all to a finished turn.
No error, no close: the call just goes dead. `StallWatchdog` follows a session's
events and says when one of these happened and which recovery step is due:

1. nudge: a blank text turn, which 3.x Live takes as new user input (ADK sends a
   single text part as `realtimeInput.text` on 3.x; pipecat's fix for #4366 sends
   `text=" "`, ADK itself sends "." after replaying history); older models get it as
   client content with `turnComplete`, the service's own way to ask for a reply;
2. rotate: the upstream connection is replaced by one resumed with the newest
   handle, and nudged again (a stuck server-side generation does not survive a
   reconnect; pipecat #4403 and LiveKit recover the same way);
3. give up: counted and logged; the call goes on and the caller may speak again.

`StallWatchdog` is pure logic on explicit times (the loop's clock): the session
feeds it events and `watch` runs the recovery steps as they fall due. Imports only
the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


class StallKind(enum.StrEnum):
    NO_REPLY = "no_reply"
    """A caller turn ended (or text was typed) and the model said nothing."""
    EMPTY_TURN = "empty_turn"
    """The model completed its turn without any content."""
    AFTER_TOOL = "after_tool"
    """A tool result went to the model, which then said nothing."""
    MID_REPLY = "mid_reply"
    """The model's reply stopped part-way, without completing its turn."""


class Step(enum.StrEnum):
    NUDGE = "nudge"
    ROTATE = "rotate"
    GIVE_UP = "give_up"


@dataclass(frozen=True, slots=True)
class Recovery:
    """What the session must do now, for which stall."""

    step: Step
    kind: StallKind
    new_stall: bool
    """The first step of a stall just detected (count it, log it)."""


class StallWatchdog:
    """One live session's expectations of its model. `timeout_s` of silence where
    output is due is a stall; each recovery step then has `step_timeout_s`."""

    def __init__(self, timeout_s: float, step_timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.step_timeout_s = step_timeout_s
        self._awaiting: StallKind | None = None
        self._since = 0.0
        self._turn_has_output = False
        self._replying = False
        self._tool_running = False
        self._recovering: StallKind | None = None
        self._next_step = Step.NUDGE
        self._due_now = False
        self._heard_until = 0.0
        self._tool_answer_due = False
        #: Stalls ended by model output after a recovery step.
        self.recovered = 0

    # -- what the session saw ------------------------------------------------
    def user_turn_ended(self, now: float) -> None:
        """A final input transcription: the caller finished speaking."""
        if not self._turn_has_output and not self._replying:
            self._expect(StallKind.NO_REPLY, now)

    def user_text_sent(self, now: float) -> None:
        """A typed turn: on 3.x it interrupts whatever the model was saying."""
        self._turn_has_output = self._replying = False
        self._expect(StallKind.NO_REPLY, now)

    def tool_called(self) -> None:
        """The model called a tool: its result, not speech, is awaited (for as long
        as the tool takes)."""
        self._tool_running = True
        self._awaiting = None
        self._replying = False  # a call is not speech: only what is said after it is

    def tool_result_sent(self, now: float, *, silent: bool) -> None:
        """A tool result went back; unless scheduled SILENT, the model should speak.
        If it is still speaking (a NON_BLOCKING call's "let me check"), that speech is
        not the answer: the result is due once that turn ends (WHEN_IDLE) or is
        interrupted for it (INTERRUPT)."""
        self._tool_running = False
        if silent:
            return
        if self._replying:
            self._tool_answer_due = True
        else:
            self._turn_has_output = False
            self._expect(StallKind.AFTER_TOOL, now)

    def output(self, now: float, *, audio_s: float = 0.0) -> None:
        """The model spoke (`audio_s` of it), wrote or transcribed something. Audio
        comes faster than real time: a reply has not stopped before the caller could
        have heard all of it."""
        if self._recovering is not None:
            self.recovered += 1
            self._recovering = None
        self._awaiting = None
        self._turn_has_output = self._replying = True
        self._since = now
        self._heard_until = max(self._heard_until, now) + audio_s

    def turn_ended(self, now: float, *, interrupted: bool = False) -> None:
        """`turn_complete` (or `interrupted`): an empty completed turn where output
        was due is a stall at once."""
        empty = self._awaiting is not None and not self._turn_has_output and not interrupted
        self._turn_has_output = self._replying = False
        if empty and self._recovering is None:
            self._start_recovery(StallKind.EMPTY_TURN, now)
            self._due_now = True
        elif not empty:
            self._awaiting = None
        if self._tool_answer_due:
            self._tool_answer_due = False
            if self._recovering is None:
                self._expect(StallKind.AFTER_TOOL, now)

    # -- what the session must do -------------------------------------------
    def deadline(self) -> float | None:
        """When `due` will next have something to do (None: nothing expected)."""
        if self._due_now:
            return self._since
        if self._recovering is not None:
            return self._since + self.step_timeout_s
        if self._awaiting is not None:
            return self._since + self.timeout_s
        if self._replying and not self._tool_running:
            return max(self._since, self._heard_until) + self.timeout_s
        return None

    def due(self, now: float) -> Recovery | None:
        """The recovery step due at `now`, if any."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        if self._due_now:
            self._due_now = False
            assert self._recovering is not None
            return self._step(now, new_stall=True)
        if self._recovering is not None:
            return self._step(now, new_stall=False)
        kind = self._awaiting or StallKind.MID_REPLY
        self._start_recovery(kind, now)
        return self._step(now, new_stall=True)

    def _expect(self, kind: StallKind, now: float) -> None:
        self._awaiting = kind
        self._since = now

    def _start_recovery(self, kind: StallKind, now: float) -> None:
        self._recovering = kind
        self._next_step = Step.NUDGE
        self._awaiting = None
        self._replying = False
        self._since = now

    def _step(self, now: float, *, new_stall: bool) -> Recovery:
        kind = self._recovering
        assert kind is not None
        step = self._next_step
        self._since = now
        if step is Step.NUDGE:
            self._next_step = Step.ROTATE
        elif step is Step.ROTATE:
            self._next_step = Step.GIVE_UP
        else:
            self._recovering = None
        return Recovery(step, kind, new_stall)


async def watch(
    watchdog: StallWatchdog,
    wakeup: asyncio.Event,
    act: Callable[[Recovery], Awaitable[None]],
) -> None:
    """Run `act` for every recovery step as it falls due, until cancelled; `wakeup`
    is set whenever the session fed the watchdog something (deadlines move)."""
    loop = asyncio.get_running_loop()
    while True:
        wakeup.clear()
        recovery = watchdog.due(loop.time())
        if recovery is not None:
            await act(recovery)
            continue
        deadline = watchdog.deadline()
        if deadline is None:
            await wakeup.wait()
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await wakeup.wait()
