"""What a client's frames mean to the double's "model": user turns, nudges, tool results.

Values only; `connection.LiveConnection` turns frames into them and queues them for
the behaviour. Imports only the standard library and the double's `wire` module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.support.live_api_double.wire import field as wire_field

NudgeKind = Literal["realtime_text", "turn_complete"]
Scheduling = Literal["INTERRUPT", "WHEN_IDLE", "SILENT"]


@dataclass(frozen=True, slots=True)
class UserTurn:
    """A caller turn the double noticed: typed text, or speech found by energy."""

    kind: str  # "text" | "audio"
    text: str
    audio_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Nudge:
    """Input that asks the model to answer without saying anything.

    `realtime_text`: `realtimeInput.text` that is blank or "." (pipecat sends " ",
    ADK 2.13 sends "." after replaying history); `turn_complete`: `clientContent`
    with `turnComplete: true` and no turns (livekit agents-js #2506: "the Live API's
    own way of requesting a reply").
    """

    kind: NudgeKind
    text: str = ""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """One `functionResponses[]` entry of a `toolResponse` frame."""

    id: str
    name: str
    response: dict[str, Any] = field(default_factory=dict)
    #: As sent (`INTERRUPT`, `WHEN_IDLE`, `SILENT`, ...), None when absent.
    scheduling: str | None = None

    @property
    def effective_scheduling(self) -> Scheduling:
        """What the model does with it: WHEN_IDLE unless INTERRUPT or SILENT was sent
        (google-genai: "Defaults to WHEN_IDLE")."""
        if self.scheduling == "INTERRUPT":
            return "INTERRUPT"
        return "SILENT" if self.scheduling == "SILENT" else "WHEN_IDLE"


ClientInput = UserTurn | Nudge | ToolResult


def is_nudge_text(text: str) -> bool:
    """Blank or "." typed text is a request for a reply, not a user turn."""
    return text.strip() in ("", ".")


def tool_results(tool_response: Mapping[str, Any]) -> list[ToolResult]:
    """The entries of a `toolResponse` frame body."""
    return [
        ToolResult(
            id=str(wire_field(r, "id") or ""),
            name=str(wire_field(r, "name") or ""),
            response=dict(wire_field(r, "response") or {}),
            scheduling=wire_field(r, "scheduling"),
        )
        for r in wire_field(tool_response, "functionResponses") or []
    ]
