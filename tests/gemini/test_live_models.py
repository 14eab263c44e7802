"""The live models the gateway knows, and sessions built from each one's profile.

Pins down:
- the default model is the stable `gemini-3.8-live`; a retired id is refused with a
  message naming it and listing the known models; an unknown id passes through;
- a setting a model does not accept is refused at start-up, naming the setting and
  the model (thinking level on 3.8, NON_BLOCKING tools on 3.1, proactive audio off
  on 3.8...); accepted ones reach the RunConfig or the agent, and nothing else does;
- text mode on an AUDIO-only model asks for AUDIO with transcription;
- the agent's function tools get the behavior and scheduling the model supports,
  unless they set their own; plain functions become FunctionTools; a thinking level
  lands in the agent's generate_content_config; an agent that sets thinking_config
  for a model without thinking settings is refused.
"""

from __future__ import annotations

import pytest
from google.adk.agents import Agent
from google.adk.models.google_llm import Gemini
from google.adk.tools.function_tool import FunctionTool
from google.genai import types

from gateway.adk.live_config import LiveConfigError, LiveSettings
from gateway.adk.live_models import (
    DEFAULT_LIVE_MODEL,
    KNOWN_LIVE_MODELS,
    RetiredModelError,
    live_model,
)
from gateway.adk.live_plan import apply_to_agent, plan_for_agent, plan_live_session
from gateway.adk.run_config import build_run_config


def get_weather(city: str) -> dict[str, str]:
    """The weather in a city."""
    return {"city": city, "weather": "sunny"}


def agent_on(model: str, **kwargs: object) -> Agent:
    return Agent(name="a", model=Gemini(model=model), instruction="Be brief.", **kwargs)  # type: ignore[arg-type]


def test_the_default_is_the_stable_model_and_the_table_knows_the_current_ones() -> None:
    assert LiveSettings().model == DEFAULT_LIVE_MODEL == "gemini-3.8-live"
    assert live_model("gemini-3.8-live").status == "stable"
    assert live_model("models/gemini-3.1-flash-live-preview").generation == "3.1"
    ids = [m.id for m in KNOWN_LIVE_MODELS]
    assert ids[:2] == ["gemini-3.8-live", "gemini-3.1-flash-live-preview"]


@pytest.mark.parametrize(
    "retired",
    ["gemini-2.5-flash-native-audio-preview-09-2025", "gemini-2.0-flash-live-001"],
)
def test_a_retired_model_is_refused_naming_it_and_the_known_ones(retired: str) -> None:
    with pytest.raises(RetiredModelError) as refused:
        live_model(retired)
    assert retired in str(refused.value)
    assert "gemini-3.8-live" in str(refused.value)
    assert "gemini-3.1-flash-live-preview" in str(refused.value)


def test_an_unknown_model_passes_through_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    plan = plan_for_agent(agent_on("gemini-9-live"), LiveSettings())
    assert not plan.model.known
    assert plan.model.id == "gemini-9-live"
    assert "not in this gateway's table" in caplog.text
    config = build_run_config(LiveSettings(), text_mode=False, plan=plan)
    assert config.enable_affective_dialog is None
    assert config.proactivity is None


@pytest.mark.parametrize(
    ("model", "setting", "named"),
    [
        ("gemini-3.8-live", {"thinking_level": "high"}, "GATEWAY_GEMINI_THINKING_LEVEL"),
        ("gemini-3.8-live", {"thinking_budget": 100}, "GATEWAY_GEMINI_THINKING_BUDGET"),
        ("gemini-3.8-live", {"affective_dialog": False}, "GATEWAY_GEMINI_AFFECTIVE_DIALOG"),
        ("gemini-3.8-live", {"proactive_audio": False}, "GATEWAY_GEMINI_PROACTIVE_AUDIO"),
        ("gemini-3.1-flash-live-preview", {"proactive_audio": True}, "PROACTIVE_AUDIO"),
        ("gemini-3.1-flash-live-preview", {"tool_behavior": "non_blocking"}, "TOOL_BEHAVIOR"),
        ("gemini-3.1-flash-live-preview", {"tool_scheduling": "interrupt"}, "TOOL_SCHEDULING"),
        ("gemini-3.1-flash-live-preview", {"thinking_budget": 10}, "THINKING_BUDGET"),
        ("gemini-3.8-live", {"tool_behavior": "blocking", "tool_scheduling": "silent"}, "SCHED"),
    ],
)
def test_a_setting_the_model_refuses_stops_start_up(
    model: str, setting: dict[str, object], named: str
) -> None:
    with pytest.raises(LiveConfigError, match=named) as refused:
        plan_live_session(LiveSettings(model=model, **setting), live_model(model))  # type: ignore[arg-type]
    assert model in str(refused.value)


def test_accepted_model_settings_reach_the_session() -> None:
    on_38 = plan_live_session(LiveSettings(proactive_audio=True), live_model("gemini-3.8-live"))
    assert on_38.proactivity is None  # always on: the field is never sent to 3.8
    assert on_38.tool_behavior is None  # the model's default (NON_BLOCKING) stays implicit
    assert on_38.tool_scheduling is types.FunctionResponseScheduling.WHEN_IDLE
    on_31 = plan_live_session(
        LiveSettings(model="gemini-3.1-flash-live-preview", thinking_level="low"),
        live_model("gemini-3.1-flash-live-preview"),
    )
    assert on_31.thinking == types.ThinkingConfig(thinking_level=types.ThinkingLevel.LOW)
    assert on_31.tool_scheduling is None  # blocking calls only: nothing to schedule
    vertex = live_model("gemini-live-2.5-flash-native-audio")
    on_25 = plan_live_session(
        LiveSettings(affective_dialog=True, proactive_audio=True, thinking_budget=256), vertex
    )
    config = build_run_config(LiveSettings(), text_mode=False, plan=on_25)
    assert config.enable_affective_dialog is True
    assert config.proactivity == types.ProactivityConfig(proactive_audio=True)
    assert on_25.thinking == types.ThinkingConfig(thinking_budget=256)


def test_tools_get_the_models_behavior_and_scheduling_unless_they_set_their_own() -> None:
    own = FunctionTool(get_weather)
    own.behavior = types.Behavior.BLOCKING
    agent = agent_on("gemini-3.8-live", tools=[get_weather, own])
    apply_to_agent(agent, plan_for_agent(agent, LiveSettings()))
    plain, kept = agent.tools
    assert isinstance(plain, FunctionTool)
    assert plain.behavior is None
    assert plain.response_scheduling is types.FunctionResponseScheduling.WHEN_IDLE
    assert kept is own
    assert kept.behavior is types.Behavior.BLOCKING
    assert kept.response_scheduling is None

    blocking = agent_on("gemini-3.8-live", tools=[get_weather])
    apply_to_agent(blocking, plan_for_agent(blocking, LiveSettings(tool_behavior="blocking")))
    assert blocking.tools[0].behavior is types.Behavior.BLOCKING  # type: ignore[union-attr]
    assert blocking.tools[0].response_scheduling is None  # type: ignore[union-attr]

    legacy = agent_on("gemini-3.1-flash-live-preview", tools=[get_weather])
    apply_to_agent(legacy, plan_for_agent(legacy, LiveSettings()))
    assert legacy.tools[0].behavior is None  # type: ignore[union-attr]
    assert legacy.tools[0].response_scheduling is None  # type: ignore[union-attr]


def test_a_non_blocking_tool_on_a_blocking_only_model_is_refused() -> None:
    tool = FunctionTool(get_weather)
    tool.behavior = types.Behavior.NON_BLOCKING
    agent = agent_on("gemini-3.1-flash-live-preview", tools=[tool])
    with pytest.raises(LiveConfigError, match="takes blocking tool calls only"):
        apply_to_agent(agent, plan_for_agent(agent, LiveSettings()))


def test_thinking_lands_on_the_agent_or_is_refused() -> None:
    agent = agent_on("gemini-3.1-flash-live-preview")
    settings = LiveSettings(model="gemini-3.1-flash-live-preview", thinking_level="medium")
    apply_to_agent(agent, plan_for_agent(agent, settings))
    assert agent.generate_content_config is not None
    thinking = agent.generate_content_config.thinking_config
    assert thinking == types.ThinkingConfig(thinking_level=types.ThinkingLevel.MEDIUM)

    thinks = agent_on(
        "gemini-3.8-live",
        generate_content_config=types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(thinking_level=types.ThinkingLevel.HIGH)
        ),
    )
    with pytest.raises(LiveConfigError, match="sets thinking_config"):
        apply_to_agent(thinks, plan_for_agent(thinks, LiveSettings()))
