"""Gemini Live settings, documented in one place (`LiveSettings`), and credentials.

Values come from the environment (`GATEWAY_GEMINI_*`), then a `.env` file, then the
defaults below. Credentials are read by google-genai itself, as in ADK's samples:
`GOOGLE_API_KEY` (Google AI Studio), or `GOOGLE_GENAI_USE_VERTEXAI=TRUE` with
`GOOGLE_CLOUD_PROJECT` and `GOOGLE_CLOUD_LOCATION` (Vertex AI, application default
credentials). What a given model accepts of these settings, and the `RunConfig`
built from them, is `live_plan`. An ADK-facing helper: imports pydantic and
python-dotenv; nothing from the media stack, HTTP, ADK or google-genai.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.adk.live_models import DEFAULT_LIVE_MODEL, ToolBehavior, ToolScheduling

ENV_PREFIX = "GATEWAY_GEMINI_"
_TRUE = {"1", "true", "yes", "on"}

Sensitivity = Literal["high", "low", "default"]
ThinkingLevel = Literal["minimal", "low", "medium", "high"]


class LiveConfigError(ValueError):
    """A Gemini Live setting that cannot work; the message names it."""


class LiveSettings(BaseModel):
    """How the gateway uses the Gemini Live API. Env: `GATEWAY_GEMINI_<FIELD>`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        default=DEFAULT_LIVE_MODEL,
        description="Live model id; the models the gateway knows and what each accepts "
        "are in gateway/adk/live_models.py and docs/gemini-live.md.",
    )
    voice: str | None = Field(
        default=None, description="Prebuilt voice name (e.g. `Puck`, `Kore`); None: the model's."
    )
    language: str | None = Field(
        default=None, description="BCP-47 language of speech (e.g. `en-US`); None: the model's."
    )
    vad_start_sensitivity: Sensitivity = Field(
        default="default", description="How readily the server decides the caller started speaking."
    )
    vad_end_sensitivity: Sensitivity = Field(
        default="default", description="How readily the server decides the caller stopped speaking."
    )
    vad_silence_ms: int | None = Field(
        default=None,
        ge=0,
        le=10_000,
        description="Silence that ends a caller turn; None: server's.",
    )
    vad_prefix_padding_ms: int | None = Field(
        default=None,
        ge=0,
        le=10_000,
        description="Speech needed before a turn starts; None: server's.",
    )
    context_compression: bool = Field(
        default=True,
        description="Sliding-window context compression, so audio sessions are not cut "
        "after ~15 minutes.",
    )
    compression_trigger_tokens: int | None = Field(
        default=None, ge=1, description="Context size that triggers compression; None: server's."
    )
    compression_target_tokens: int | None = Field(
        default=None, ge=1, description="Context size compression shrinks to; None: server's."
    )
    session_resumption: bool = Field(
        default=True,
        description="Ask for resumption handles, so goAway and dropped connections "
        "reconnect without losing the conversation.",
    )
    handle_max_age_s: float = Field(
        default=7_200.0, gt=0, description="Resumption handles older than this are not used (2 h)."
    )
    max_reconnects: int = Field(
        default=3,
        ge=0,
        le=20,
        description="Reconnects in a row after upstream failures, then give up.",
    )
    reconnect_backoff_s: float = Field(
        default=0.25, ge=0, le=10, description="First reconnect delay; doubles on each retry."
    )
    thinking_level: ThinkingLevel | None = Field(
        default=None,
        description="Reasoning depth, on models that take a thinking level (3.1); None: "
        "the model's (minimal on 3.1).",
    )
    thinking_budget: int | None = Field(
        default=None,
        ge=0,
        description="Reasoning tokens, on models that take a budget (2.5); None: model's.",
    )
    affective_dialog: bool | None = Field(
        default=None, description="Affective dialog, on models that offer it (2.5 on Vertex)."
    )
    proactive_audio: bool | None = Field(
        default=None,
        description="Proactive audio, where it is a choice (2.5); always on for 3.8.",
    )
    tool_behavior: ToolBehavior | None = Field(
        default=None,
        description="`blocking` or `non_blocking` for the agent's function tools that name "
        "none; None: the model's default (non-blocking on 3.8, blocking on 3.1).",
    )
    tool_scheduling: ToolScheduling | None = Field(
        default=None,
        description="When the model reacts to a non-blocking tool's result: `interrupt`, "
        "`when_idle` (default on models with scheduling) or `silent`.",
    )
    stall_timeout_s: float = Field(
        default=8.0,
        ge=0,
        le=120,
        description="A caller turn or tool result with no model output for this long is a "
        "stall: the model is nudged, then the connection rotated (0: no watchdog).",
    )
    stall_nudge_timeout_s: float = Field(
        default=4.0,
        gt=0,
        le=60,
        description="How long a nudge has to bring model output before the upstream "
        "connection is rotated (resumed with the newest handle).",
    )
    connect_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Bound on opening the Live connection (and the check).",
    )


@dataclass(frozen=True, slots=True)
class GeminiCredentials:
    """Which backend the environment configures; never carries the secret itself."""

    backend: Literal["api_key", "vertex_ai"] | None
    project: str | None = None
    location: str | None = None

    @property
    def configured(self) -> bool:
        return self.backend is not None


def gemini_credentials(environ: Mapping[str, str] | None = None) -> GeminiCredentials:
    """What google-genai will use, from the same variables it reads."""
    env = os.environ if environ is None else environ
    if env.get("GOOGLE_GENAI_USE_VERTEXAI", "").strip().lower() in _TRUE:
        project, location = env.get("GOOGLE_CLOUD_PROJECT"), env.get("GOOGLE_CLOUD_LOCATION")
        if not project or not location:
            raise LiveConfigError(
                "GOOGLE_GENAI_USE_VERTEXAI is set but GOOGLE_CLOUD_PROJECT and "
                "GOOGLE_CLOUD_LOCATION are not both set"
            )
        return GeminiCredentials("vertex_ai", project, location)
    if env.get("GOOGLE_API_KEY") or env.get("GEMINI_API_KEY"):
        return GeminiCredentials("api_key")
    return GeminiCredentials(None)


def merged_environ(env_file: Path | None = Path(".env")) -> dict[str, str]:
    """The process environment over the `.env` file's values (the environment wins)."""
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ)
    return values


def load_live_settings(environ: Mapping[str, str] | None = None) -> LiveSettings:
    """Build `LiveSettings` from `GATEWAY_GEMINI_*` variables (default: env + `.env`)."""
    env = merged_environ() if environ is None else environ
    values: dict[str, Any] = {}
    for name in LiveSettings.model_fields:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = None if raw.strip() == "" else raw.strip()
    try:
        return LiveSettings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise LiveConfigError(f"invalid Gemini Live settings: {problems}") from None
