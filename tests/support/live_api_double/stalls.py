"""Stalls the double can serve, as reported from the 3.x Live models, for watchdog tests.

Kinds (research notes of 2026-12-06, section 4):
- `empty_turn`: the turn is answered with a bare `turnComplete` (python-genai #2117:
  "turnComplete arrives with empty content", ~50 % of calls on 3.1); a nudge then
  gets the real reply;
- `silent`: no output at all after the user turn (gemini-live-api-examples #48: "no
  audio and no turnComplete for 50 s+"); a nudge gets the real reply;
- `after_tool`: nothing after a tool response until a nudge (pipecat #4366: "every
  tool-call turn stalls silently after the tool returns"); the nudge gets the result;
- `mid_reply`: the next reply stops about halfway, with no `turnComplete`, and the
  connection ignores every later input (pipecat #4633); a new connection resumed
  with a handle of this one owes the whole reply (`OwedReply`) and delivers it on
  its first nudge or user turn.

A plan is consumed in order: a turn kind by the next user turn, `after_tool` by the
next tool response the model would speak about. A head that belongs to the other
point waits. The connection's own plan comes before the double's.

Imports only the standard library and the double's `inputs` module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast, get_args

from tests.support.live_api_double.inputs import UserTurn

StallKind = Literal["empty_turn", "silent", "after_tool", "mid_reply"]
StallPoint = Literal["turn", "tool"]
STALL_KINDS: frozenset[str] = frozenset(get_args(StallKind))
_POINT_KINDS: dict[StallPoint, frozenset[str]] = {
    "turn": frozenset({"empty_turn", "silent", "mid_reply"}),
    "tool": frozenset({"after_tool"}),
}


def check_kind(kind: str) -> StallKind:
    if kind not in STALL_KINDS:
        raise ValueError(f"unknown stall kind {kind!r}; one of {sorted(STALL_KINDS)}")
    return cast(StallKind, kind)


def take_stall(plans: tuple[list[StallKind], ...], point: StallPoint) -> StallKind | None:
    """Pop the first plan's head if it is served at `point`; None otherwise."""
    for plan in plans:
        if plan:
            head = check_kind(plan[0])
            if head not in _POINT_KINDS[point]:
                return None
            return plan.pop(0)
    return None


@dataclass(frozen=True, slots=True)
class OwedReply:
    """A reply cut by a `mid_reply` stall, owed by the next connection that resumes."""

    turn: UserTurn | None
    text: str
    audio_s: float
