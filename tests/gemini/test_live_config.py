"""Gemini Live settings and the RunConfig built from them.

Pins down: defaults (resumption and compression on, AUDIO, transcription both ways);
every `GATEWAY_GEMINI_*` variable reaches the RunConfig; a `.env` file is read and the
environment wins over it; bad values name the variable; credentials are detected
as google-genai would read them, and half a Vertex AI configuration is an error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.genai import types

from gateway.adk.live_config import (
    LiveConfigError,
    LiveSettings,
    gemini_credentials,
    load_live_settings,
    merged_environ,
)
from gateway.adk.live_models import other_live_model
from gateway.adk.live_plan import LivePlan
from gateway.adk.run_config import build_run_config


def test_defaults_resume_compress_and_transcribe() -> None:
    settings = load_live_settings({})
    config = build_run_config(settings, text_mode=False)
    assert config.response_modalities == [types.Modality.AUDIO]
    assert config.session_resumption == types.SessionResumptionConfig()
    assert config.session_resumption.transparent is None  # the Gemini API rejects it
    assert config.context_window_compression is not None
    assert config.input_audio_transcription is not None
    assert config.output_audio_transcription is not None
    assert config.realtime_input_config is None
    assert config.speech_config is None


def test_every_variable_reaches_the_run_config() -> None:
    settings = load_live_settings(
        {
            "GATEWAY_GEMINI_MODEL": "gemini-3.8-live",
            "GATEWAY_GEMINI_VOICE": "Kore",
            "GATEWAY_GEMINI_LANGUAGE": "de-DE",
            "GATEWAY_GEMINI_VAD_START_SENSITIVITY": "low",
            "GATEWAY_GEMINI_VAD_END_SENSITIVITY": "high",
            "GATEWAY_GEMINI_VAD_SILENCE_MS": "700",
            "GATEWAY_GEMINI_VAD_PREFIX_PADDING_MS": "40",
            "GATEWAY_GEMINI_COMPRESSION_TRIGGER_TOKENS": "20000",
            "GATEWAY_GEMINI_COMPRESSION_TARGET_TOKENS": "10000",
        }
    )
    assert settings.model == "gemini-3.8-live"
    config = build_run_config(settings, text_mode=False, resumption_handle="h7")
    assert config.session_resumption == types.SessionResumptionConfig(handle="h7")
    assert config.speech_config is not None
    assert config.speech_config.language_code == "de-DE"
    voice = config.speech_config.voice_config
    assert voice
    assert voice.prebuilt_voice_config
    assert voice.prebuilt_voice_config.voice_name == "Kore"
    assert config.realtime_input_config
    assert config.realtime_input_config.automatic_activity_detection
    vad = config.realtime_input_config.automatic_activity_detection
    assert vad.start_of_speech_sensitivity == types.StartSensitivity.START_SENSITIVITY_LOW
    assert vad.end_of_speech_sensitivity == types.EndSensitivity.END_SENSITIVITY_HIGH
    assert (vad.silence_duration_ms, vad.prefix_padding_ms) == (700, 40)
    compression = config.context_window_compression
    assert compression
    assert compression.sliding_window
    assert (compression.trigger_tokens, compression.sliding_window.target_tokens) == (20000, 10000)


def test_text_mode_and_switches_off() -> None:
    settings = LiveSettings(session_resumption=False, context_compression=False, voice="Puck")
    text_model = LivePlan(model=other_live_model("scripted-live"))
    config = build_run_config(settings, text_mode=True, plan=text_model)
    assert config.response_modalities == [types.Modality.TEXT]
    assert config.session_resumption is None
    assert config.context_window_compression is None
    assert config.speech_config is None
    # Every current Gemini Live model answers in AUDIO only: text mode asks for audio
    # and is served from its output transcription.
    config = build_run_config(settings, text_mode=True)
    assert config.response_modalities == [types.Modality.AUDIO]
    assert config.output_audio_transcription is not None
    assert config.speech_config is None


@pytest.mark.parametrize(
    ("name", "value"),
    [("VAD_SILENCE_MS", "-1"), ("VAD_START_SENSITIVITY", "loud"), ("MAX_RECONNECTS", "x")],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(LiveConfigError, match=f"GATEWAY_GEMINI_{name}"):
        load_live_settings({f"GATEWAY_GEMINI_{name}": value})


def test_dotenv_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("GATEWAY_GEMINI_VOICE=Kore\nGATEWAY_GEMINI_LANGUAGE=fr-FR\n")
    monkeypatch.setenv("GATEWAY_GEMINI_LANGUAGE", "en-GB")
    settings = load_live_settings(merged_environ(env_file))
    assert (settings.voice, settings.language) == ("Kore", "en-GB")


def test_credentials_as_google_genai_reads_them() -> None:
    assert not gemini_credentials({}).configured
    assert gemini_credentials({"GOOGLE_API_KEY": "k"}).backend == "api_key"
    vertex = gemini_credentials(
        {
            "GOOGLE_GENAI_USE_VERTEXAI": "TRUE",
            "GOOGLE_CLOUD_PROJECT": "p",
            "GOOGLE_CLOUD_LOCATION": "us-central1",
        }
    )
    assert (vertex.backend, vertex.project, vertex.location) == ("vertex_ai", "p", "us-central1")
    with pytest.raises(LiveConfigError, match="GOOGLE_CLOUD_PROJECT"):
        gemini_credentials({"GOOGLE_GENAI_USE_VERTEXAI": "true", "GOOGLE_API_KEY": "k"})
