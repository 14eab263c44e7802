"""The Gemini Live models the gateway knows, and what each one accepts.

Google moves its live models (twice in 2026), and a setting one model needs is an
error on another, so the gateway builds every live session from the model's profile
here and refuses, at start-up, a setting the model would refuse mid-call. Checked on
2026-12-06 against the model pages (the reference):

- `gemini-3.8-live`: stable since 2026-09-15 (ai.google.dev/gemini-api/docs/models/
  gemini-3.8-live, "Migrating from Gemini 3.1 Flash Live"). AUDIO responses only
  (text comes from output transcription); no `thinking_config`; affective dialog
  removed; proactive audio always on (`proactive_audio: false` is an error); function
  calls NON_BLOCKING by default with response scheduling (SILENT, WHEN_IDLE,
  INTERRUPT), BLOCKING still available per tool.
- `gemini-3.1-flash-live-preview`: legacy preview, Gemini API only (.../models/
  gemini-3.1-flash-live-preview). AUDIO only; `thinking_level` (default minimal)
  instead of a thinking budget; synchronous (blocking) function calls only; no
  proactive audio, no affective dialog.
- `gemini-live-2.5-flash-native-audio`: GA on Vertex AI only, regional (us-central1,
  us-east5, europe-west4; google-genai 2.34's live tests note the global endpoint
  refuses it). AUDIO only; thinking budget; affective dialog and proactive audio on
  request; NON_BLOCKING calls with scheduling.
- Shut down: the 2.0 and 2.5 preview live models (.../deprecations: 2025-12-09 for
  `gemini-2.0-flash-live-001` and `gemini-live-2.5-flash-preview`; the 2.5 native
  audio previews followed in 2026). The service refuses them with close 1008.

An id in neither list is passed through as it is, with a one-line warning at
start-up: the operator may know a model this table does not yet.
An ADK-facing helper: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Backend = Literal["api_key", "vertex_ai"]
ToolBehavior = Literal["blocking", "non_blocking"]
ToolScheduling = Literal["interrupt", "when_idle", "silent"]
Thinking = Literal["none", "level", "budget", "any"]
ProactiveAudio = Literal["always", "optional", "unsupported", "any"]


@dataclass(frozen=True, slots=True)
class LiveModel:
    """One live model's profile: what its session setup may carry."""

    id: str
    generation: str
    status: str
    backends: frozenset[Backend]
    #: Accepts `response_modalities=[TEXT]`; otherwise text mode is served from the
    #: output transcription of an AUDIO session.
    text_responses: bool
    #: How reasoning is configured: not at all, `thinking_level`, `thinking_budget`.
    thinking: Thinking
    affective_dialog: bool
    proactive_audio: ProactiveAudio
    tool_behaviors: frozenset[ToolBehavior]
    #: What the model does with a declaration that names no behavior.
    default_tool_behavior: ToolBehavior | None
    #: Accepts `scheduling` on the responses to NON_BLOCKING calls.
    response_scheduling: bool
    #: In this gateway's table (False: an id passed through as the operator gave it).
    known: bool = True

    @property
    def summary(self) -> str:
        return f"{self.id} ({self.generation}, {self.status})"


_BOTH: frozenset[Backend] = frozenset({"api_key", "vertex_ai"})

KNOWN_LIVE_MODELS: tuple[LiveModel, ...] = (
    LiveModel(
        id="gemini-3.8-live",
        generation="3.8",
        status="stable",
        backends=_BOTH,
        text_responses=False,
        thinking="none",
        affective_dialog=False,
        proactive_audio="always",
        tool_behaviors=frozenset({"blocking", "non_blocking"}),
        default_tool_behavior="non_blocking",
        response_scheduling=True,
    ),
    LiveModel(
        id="gemini-3.1-flash-live-preview",
        generation="3.1",
        status="legacy preview, Gemini API only",
        backends=frozenset({"api_key"}),
        text_responses=False,
        thinking="level",
        affective_dialog=False,
        proactive_audio="unsupported",
        tool_behaviors=frozenset({"blocking"}),
        default_tool_behavior="blocking",
        response_scheduling=False,
    ),
    LiveModel(
        id="gemini-live-2.5-flash-native-audio",
        generation="2.5",
        status="GA on Vertex AI only, regional",
        backends=frozenset({"vertex_ai"}),
        text_responses=False,
        thinking="budget",
        affective_dialog=True,
        proactive_audio="optional",
        tool_behaviors=frozenset({"blocking", "non_blocking"}),
        default_tool_behavior="blocking",
        response_scheduling=True,
    ),
)

#: Live model ids the service no longer serves, and since when.
RETIRED_LIVE_MODELS: dict[str, str] = {
    "gemini-2.0-flash-live-001": "shut down on 2025-12-09",
    "gemini-2.0-flash-live-preview-04-09": "shut down on 2025-12-09",
    "gemini-live-2.5-flash-preview": "shut down on 2025-12-09",
    "gemini-2.5-flash-preview-native-audio-dialog": "shut down on 2025-12-09",
    "gemini-2.5-flash-exp-native-audio-thinking-dialog": "shut down on 2025-12-09",
    "gemini-2.5-flash-native-audio-preview-09-2025": "shut down in 2026",
    "gemini-2.5-flash-native-audio-preview-12-2025": "shut down in 2026",
    "gemini-live-2.5-flash-preview-native-audio": "shut down in 2026",
    "gemini-live-2.5-flash-preview-native-audio-09-2025": "shut down in 2026",
}

DEFAULT_LIVE_MODEL = "gemini-3.8-live"


class RetiredModelError(ValueError):
    """The configured live model is one the service no longer serves."""


def model_id(name: str) -> str:
    """The bare id of `models/X` or a Vertex resource name (`.../models/X`)."""
    return name.rsplit("/", 1)[-1]


def known_models_text() -> str:
    """The known live models, for messages: `id (generation, status), ...`."""
    return ", ".join(m.summary for m in KNOWN_LIVE_MODELS)


def other_live_model(name: str) -> LiveModel:
    """The profile of a live model that is not Gemini's (the offline `local-live`,
    `scripted-live`): ADK talks to it directly, so nothing is restricted and it
    answers text in text mode."""
    return LiveModel(
        id=name,
        generation="not Gemini",
        status="an ADK live model of this process",
        backends=_BOTH,
        text_responses=True,
        thinking="any",
        affective_dialog=True,
        proactive_audio="any",
        tool_behaviors=frozenset({"blocking", "non_blocking"}),
        default_tool_behavior=None,
        response_scheduling=True,
        known=False,
    )


def live_model(name: str) -> LiveModel:
    """The profile of the live model `name`; `RetiredModelError` if it is shut down.
    An unknown id gets a pass-through profile (`known=False`) that sends no
    model-specific setting unless the operator asks for it."""
    bare = model_id(name)
    for model in KNOWN_LIVE_MODELS:
        if model.id == bare:
            return model
    if bare in RETIRED_LIVE_MODELS:
        raise RetiredModelError(
            f"the Gemini live model {bare} was {RETIRED_LIVE_MODELS[bare]}: set "
            f"GATEWAY_GEMINI_MODEL (or your agent's model) to one the Live API serves: "
            f"{known_models_text()}"
        )
    return LiveModel(
        id=bare,
        generation="unknown",
        status="not in this gateway's table",
        backends=_BOTH,
        text_responses=False,
        thinking="any",
        affective_dialog=True,
        proactive_audio="any",
        tool_behaviors=frozenset({"blocking", "non_blocking"}),
        default_tool_behavior=None,
        response_scheduling=True,
        known=False,
    )
