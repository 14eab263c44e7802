"""The ADK `RunConfig` of one live session, from the settings and the model's plan.

An ADK-facing helper: imports google.adk's `RunConfig` and google.genai types.
"""

from __future__ import annotations

from collections.abc import Callable

# The import ADK's documentation gives (adk-docs runtime/runconfig.md); the module does
# not re-export StreamingMode explicitly, hence the ignore (mypy's no-implicit-reexport).
from google.adk.agents.run_config import RunConfig, StreamingMode  # type: ignore[attr-defined]
from google.genai import types

from gateway.adk.live_config import LiveSettings
from gateway.adk.live_models import live_model
from gateway.adk.live_plan import LivePlan, plan_live_session
from gateway.agent_api import Modality

#: (modality, resumption handle) -> the RunConfig of one `run_live`.
RunConfigFactory = Callable[[Modality, str | None], RunConfig]


def live_run_config_factory(settings: LiveSettings, plan: LivePlan) -> RunConfigFactory:
    """RunConfigs from the Gemini Live settings (transcription, VAD, resumption...),
    with what `plan`'s model takes."""

    def factory(modality: Modality, handle: str | None) -> RunConfig:
        text_mode = modality is Modality.TEXT
        return build_run_config(settings, text_mode=text_mode, resumption_handle=handle, plan=plan)

    return factory


def build_run_config(
    settings: LiveSettings,
    *,
    text_mode: bool,
    resumption_handle: str | None = None,
    plan: LivePlan | None = None,
) -> RunConfig:
    """The `RunConfig` of one live session for `plan`'s model (default: the settings'
    model): one response modality, transcription on both sides, VAD tuning,
    compression and resumption (with `resumption_handle` to continue a previous
    connection's server-side session), and only the model-specific fields the model
    takes. Text mode on a model with AUDIO responses only asks for audio: the text
    is its output transcription (see `LivePlan.text_from_transcription`)."""
    plan = plan or plan_live_session(settings, live_model(settings.model))
    text_responses = text_mode and not plan.text_from_transcription
    resumption = None
    if settings.session_resumption:
        # Never `transparent=True`: the Gemini API (non-Vertex) rejects it.
        resumption = types.SessionResumptionConfig(handle=resumption_handle)
    return RunConfig(
        streaming_mode=StreamingMode.BIDI,
        response_modalities=[types.Modality.TEXT if text_responses else types.Modality.AUDIO],
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        speech_config=_speech_config(settings) if not text_mode else None,
        realtime_input_config=_realtime_input_config(settings),
        context_window_compression=_compression(settings),
        session_resumption=resumption,
        enable_affective_dialog=plan.affective_dialog,
        proactivity=plan.proactivity,
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
