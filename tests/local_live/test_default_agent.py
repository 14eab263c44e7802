"""The default agent: which model it runs, its tools, and the time it tells.

Pins down:
- no Gemini credentials: the offline `local-live` model with `get_current_time`;
  `GATEWAY_LOCAL_RECOGNIZER=pocketsphinx` selects `local-live-pocketsphinx`, and an
  unknown recognizer is refused with a message naming the setting;
- `GOOGLE_API_KEY` or Vertex AI: the configured Gemini Live model
  (`GATEWAY_GEMINI_MODEL` overrides the default) plus Google Search;
- the choice is logged once, at INFO, with how to switch;
- `get_current_time` reports the real local time, as spoken on a 12-hour clock.
"""

from __future__ import annotations

import logging
from datetime import datetime

import pytest

from gateway.adk.live_config import LiveSettings
from gateway.agents.default import build_default_agent, gemini_configured, gemini_model_name
from gateway.agents.tools import get_current_time, spoken_time


def tool_names(environ: dict[str, str]) -> set[str]:
    agent = build_default_agent(environ=environ)
    return {str(getattr(t, "name", None) or getattr(t, "__name__", "")) for t in agent.tools}


def test_offline_without_credentials(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.agents.default")
    agent = build_default_agent(environ={"GOOGLE_GENAI_USE_VERTEXAI": "false"})
    assert agent.model == "local-live"
    assert tool_names({}) == {"get_current_time"}
    choice = [r for r in caplog.records if r.name == "gateway.agents.default"]
    assert len(choice) == 2  # one per agent built above
    assert "local-live" in choice[0].getMessage()
    assert "GOOGLE_API_KEY" in choice[0].getMessage()


def test_recognizer_setting() -> None:
    assert build_default_agent(environ={"GATEWAY_LOCAL_RECOGNIZER": "whisper"}).model == (
        "local-live"
    )
    fallback = build_default_agent(environ={"GATEWAY_LOCAL_RECOGNIZER": "pocketsphinx"})
    assert fallback.model == "local-live-pocketsphinx"
    with pytest.raises(ValueError, match="GATEWAY_LOCAL_RECOGNIZER"):
        build_default_agent(environ={"GATEWAY_LOCAL_RECOGNIZER": "vosk"})


@pytest.mark.parametrize(
    ("environ", "model"),
    [
        ({"GOOGLE_API_KEY": "key"}, LiveSettings().model),
        ({"GOOGLE_API_KEY": "key", "GATEWAY_GEMINI_MODEL": "gemini-x-live"}, "gemini-x-live"),
        (
            {
                "GOOGLE_GENAI_USE_VERTEXAI": "TRUE",
                "GOOGLE_CLOUD_PROJECT": "p",
                "GOOGLE_CLOUD_LOCATION": "us-central1",
                "GATEWAY_GEMINI_MODEL": "gemini-live-2.5-flash",
            },
            "gemini-live-2.5-flash",
        ),
    ],
)
def test_gemini_when_configured(
    environ: dict[str, str], model: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.agents.default")
    assert gemini_configured(environ)
    assert gemini_model_name(environ) == model
    agent = build_default_agent(environ=environ)
    assert agent.model == model
    assert tool_names(environ) == {"get_current_time", "google_search"}
    assert model in caplog.records[0].getMessage()


def test_no_key_is_not_configured() -> None:
    assert not gemini_configured({"GOOGLE_API_KEY": ""})


def test_current_time_is_the_real_local_time() -> None:
    before = datetime.now()
    result = get_current_time()
    after = datetime.now()
    assert result["status"] == "success"
    assert result["report"] in {spoken_time(before), spoken_time(after)}
    assert spoken_time(datetime(2026, 1, 1, 0, 5)) == "It is 12:05 AM."
    assert spoken_time(datetime(2026, 1, 1, 12, 0)) == "It is 12:00 PM."
    assert spoken_time(datetime(2026, 1, 1, 23, 59)) == "It is 11:59 PM."
