"""Gemini Live settings, documented in one place, and the ADK `RunConfig` for a call.

Values come from the environment (`GATEWAY_GEMINI_*`), then a `.env` file, then the
defaults below. Credentials are read by google-genai itself, as in ADK's samples:
`GOOGLE_API_KEY` (Google AI Studio), or `GOOGLE_GENAI_USE_VERTEXAI=TRUE` with
`GOOGLE_CLOUD_PROJECT` and `GOOGLE_CLOUD_LOCATION` (Vertex AI, application default
credentials). An ADK-facing helper: may import pydantic, python-dotenv, google.genai
types and google.adk's `RunConfig`; nothing from the media stack or HTTP.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values

# The import ADK's documentation gives (adk-docs runtime/runconfig.md); the module does
# not re-export StreamingMode explicitly, hence the ignore (mypy's no-implicit-reexport).
from google.adk.agents.run_config import RunConfig, StreamingMode  # type: ignore[attr-defined]
from google.genai import types
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "GATEWAY_GEMINI_"
_TRUE = {"1", "true", "yes", "on"}

Sensitivity = Literal["high", "low", "default"]


class LiveConfigError(ValueError):
    """A Gemini Live setting that cannot work; the message names it."""


class LiveSettings(BaseModel):
    """How the gateway uses the Gemini Live API. Env: `GATEWAY_GEMINI_<FIELD>`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        default="gemini-2.5-flash-native-audio-preview-09-2025",
        description="Live model id (Vertex AI names differ, e.g. `gemini-live-2.5-flash`).",
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


def build_run_config(
    settings: LiveSettings, *, text_mode: bool, resumption_handle: str | None = None
) -> RunConfig:
    """The `RunConfig` of one live session: one response modality, transcription on
    both sides, VAD tuning, compression and resumption (with `resumption_handle` to
    continue a previous connection's server-side session)."""
    resumption = None
    if settings.session_resumption:
        # Never `transparent=True`: the Gemini API (non-Vertex) rejects it.
        resumption = types.SessionResumptionConfig(handle=resumption_handle)
    return RunConfig(
        streaming_mode=StreamingMode.BIDI,
        response_modalities=[types.Modality.TEXT if text_mode else types.Modality.AUDIO],
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        speech_config=_speech_config(settings) if not text_mode else None,
        realtime_input_config=_realtime_input_config(settings),
        context_window_compression=_compression(settings),
        session_resumption=resumption,
    )


def _speech_config(settings: LiveSettings) -> types.SpeechConfig | None:
    if settings.voice is None and settings.language is None:
        return None
    voice = None
    if settings.voice is not None:
        prebuilt = types.PrebuiltVoiceConfig(voice_name=settings.voice)
        voice = types.VoiceConfig(prebuilt_voice_config=prebuilt)
    return types.SpeechConfig(voice_config=voice, language_code=settings.language)


def _realtime_input_config(settings: LiveSettings) -> types.RealtimeInputConfig | None:
    start = {"high": types.StartSensitivity.START_SENSITIVITY_HIGH,
             "low": types.StartSensitivity.START_SENSITIVITY_LOW}  # fmt: skip
    end = {"high": types.EndSensitivity.END_SENSITIVITY_HIGH,
           "low": types.EndSensitivity.END_SENSITIVITY_LOW}  # fmt: skip
    detection = types.AutomaticActivityDetection(
        start_of_speech_sensitivity=start.get(settings.vad_start_sensitivity),
        end_of_speech_sensitivity=end.get(settings.vad_end_sensitivity),
        silence_duration_ms=settings.vad_silence_ms,
        prefix_padding_ms=settings.vad_prefix_padding_ms,
    )
    if not detection.model_dump(exclude_none=True):
        return None
    return types.RealtimeInputConfig(automatic_activity_detection=detection)


def _compression(settings: LiveSettings) -> types.ContextWindowCompressionConfig | None:
    if not settings.context_compression:
        return None
    window = types.SlidingWindow(target_tokens=settings.compression_target_tokens)
    return types.ContextWindowCompressionConfig(
        trigger_tokens=settings.compression_trigger_tokens, sliding_window=window
    )
