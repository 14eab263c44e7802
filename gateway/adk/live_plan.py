"""What a model's live sessions are built with: the settings checked against its profile.

`plan_live_session` resolves the `GATEWAY_GEMINI_*` settings against the model's
profile (`live_models`): a setting the model does not accept is refused here, at
start-up, with a message naming the setting and the model, instead of a 1007 close
mid-call. `apply_to_agent` puts what lives on the agent rather than on the
`RunConfig` (thinking, tool behavior and response scheduling) onto the ADK agent
the gateway serves, once, before its runner is built; ADK 2.13 copies an agent's
`generate_content_config.thinking_config` into the live setup as it is
(`google_llm.py`) and marks a tool's declaration NON_BLOCKING from its `behavior`
or `response_scheduling` (`_agent_tools.mark_live_async_tools_non_blocking`).
An ADK-facing helper: imports google.adk and google.genai types.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from google.adk.agents import BaseAgent, LlmAgent
from google.adk.agents.llm_agent import ToolUnion
from google.adk.tools.function_tool import FunctionTool
from google.genai import types

from gateway.adk.live_config import LiveConfigError, LiveSettings
from gateway.adk.live_models import (
    LiveModel,
    ToolScheduling,
    known_models_text,
    live_model,
    other_live_model,
)
from gateway.adk.preflight import live_gemini

logger = logging.getLogger(__name__)

#: Scheduling of tool results on models that take it, unless set: the service's own
#: default (google-genai: "Defaults to WHEN_IDLE"), which lets the model finish what
#: it is saying ("let me check") before it speaks the result.
DEFAULT_TOOL_SCHEDULING: ToolScheduling = "when_idle"

_BEHAVIOR = {"blocking": types.Behavior.BLOCKING, "non_blocking": types.Behavior.NON_BLOCKING}
_SCHEDULING = {
    "interrupt": types.FunctionResponseScheduling.INTERRUPT,
    "when_idle": types.FunctionResponseScheduling.WHEN_IDLE,
    "silent": types.FunctionResponseScheduling.SILENT,
}
_THINKING_LEVEL = {
    "minimal": types.ThinkingLevel.MINIMAL,
    "low": types.ThinkingLevel.LOW,
    "medium": types.ThinkingLevel.MEDIUM,
    "high": types.ThinkingLevel.HIGH,
}


@dataclass(frozen=True, slots=True)
class LivePlan:
    """The model's profile and the model-specific parts of its sessions."""

    model: LiveModel
    thinking: types.ThinkingConfig | None = None
    affective_dialog: bool | None = None
    proactivity: types.ProactivityConfig | None = None
    #: Set on every function tool of the agent that names no behavior of its own.
    tool_behavior: types.Behavior | None = None
    tool_scheduling: types.FunctionResponseScheduling | None = None

    @property
    def text_from_transcription(self) -> bool:
        """Text mode is served from the output transcription of an AUDIO session."""
        return not self.model.text_responses


def plan_for_agent(agent: BaseAgent, settings: LiveSettings) -> LivePlan:
    """The plan for the live model `agent` runs on (`RetiredModelError` if shut down,
    `LiveConfigError` for a setting it refuses); an unknown Gemini id is passed
    through with a warning, a model that is not Gemini gets no restriction."""
    gemini = live_gemini(agent)
    if gemini is None:
        name = agent.canonical_live_model.model if isinstance(agent, LlmAgent) else "?"
        return LivePlan(model=other_live_model(name))
    model = live_model(gemini.model)
    if not model.known:
        logger.warning(
            "Gemini live model %s is not in this gateway's table; passing it through as "
            "it is (known: %s)", model.id, known_models_text()
        )  # fmt: skip
    else:
        logger.info("Gemini live model %s", model.summary)
    return plan_live_session(settings, model)


def plan_live_session(settings: LiveSettings, model: LiveModel) -> LivePlan:
    """The plan for `model`; `LiveConfigError` naming every setting it refuses."""
    problems = _refused_settings(settings, model)
    if problems:
        raise LiveConfigError(
            f"Gemini live model {model.id} does not accept: " + "; ".join(problems)
        )
    return LivePlan(
        model=model,
        thinking=_thinking(settings),
        affective_dialog=settings.affective_dialog,
        proactivity=_proactivity(settings, model),
        tool_behavior=_BEHAVIOR[settings.tool_behavior] if settings.tool_behavior else None,
        tool_scheduling=_tool_scheduling(settings, model),
    )


def _refused_settings(settings: LiveSettings, model: LiveModel) -> list[str]:
    problems = []
    if settings.thinking_level and model.thinking not in ("level", "any"):
        problems.append("GATEWAY_GEMINI_THINKING_LEVEL (it takes no thinking level)")
    if settings.thinking_budget is not None and model.thinking not in ("budget", "any"):
        problems.append("GATEWAY_GEMINI_THINKING_BUDGET (it takes no thinking budget)")
    if settings.affective_dialog is not None and not model.affective_dialog:
        problems.append("GATEWAY_GEMINI_AFFECTIVE_DIALOG (affective dialog is not offered)")
    if settings.proactive_audio is not None and (
        model.proactive_audio == "unsupported"
        or (model.proactive_audio == "always" and not settings.proactive_audio)
    ):
        why = "always on" if model.proactive_audio == "always" else "not offered"
        problems.append(f"GATEWAY_GEMINI_PROACTIVE_AUDIO (proactive audio is {why})")
    if settings.tool_behavior and settings.tool_behavior not in model.tool_behaviors:
        allowed = ", ".join(sorted(model.tool_behaviors))
        problems.append(f"GATEWAY_GEMINI_TOOL_BEHAVIOR={settings.tool_behavior} (only {allowed})")
    if settings.tool_scheduling:
        behavior = settings.tool_behavior or model.default_tool_behavior
        if not model.response_scheduling:
            problems.append("GATEWAY_GEMINI_TOOL_SCHEDULING (no response scheduling)")
        elif behavior == "blocking":
            problems.append("GATEWAY_GEMINI_TOOL_SCHEDULING (tool calls are blocking)")
    return problems


def _thinking(settings: LiveSettings) -> types.ThinkingConfig | None:
    if settings.thinking_level:
        return types.ThinkingConfig(thinking_level=_THINKING_LEVEL[settings.thinking_level])
    if settings.thinking_budget is not None:
        return types.ThinkingConfig(thinking_budget=settings.thinking_budget)
    return None


def _proactivity(settings: LiveSettings, model: LiveModel) -> types.ProactivityConfig | None:
    """Only where it is a choice: on 3.8 it is always on and the field is not sent."""
    if settings.proactive_audio is None or model.proactive_audio == "always":
        return None
    return types.ProactivityConfig(proactive_audio=settings.proactive_audio)


def _tool_scheduling(
    settings: LiveSettings, model: LiveModel
) -> types.FunctionResponseScheduling | None:
    if settings.tool_scheduling:
        return _SCHEDULING[settings.tool_scheduling]
    behavior = settings.tool_behavior or model.default_tool_behavior
    if model.known and model.response_scheduling and behavior == "non_blocking":
        return _SCHEDULING[DEFAULT_TOOL_SCHEDULING]
    return None


def apply_to_agent(agent: BaseAgent, plan: LivePlan) -> None:
    """Put the plan's thinking and tool settings on `agent` and its sub-agents;
    `LiveConfigError` when the agent itself asks for what the model refuses."""
    for node in _llm_agents(agent):
        _apply_thinking(node, plan)
        node.tools = [_configured_tool(tool, node, plan) for tool in node.tools]


def _llm_agents(agent: BaseAgent) -> list[LlmAgent]:
    found = [agent] if isinstance(agent, LlmAgent) else []
    for sub in agent.sub_agents:
        found += _llm_agents(sub)
    return found


def _apply_thinking(agent: LlmAgent, plan: LivePlan) -> None:
    config = agent.generate_content_config or types.GenerateContentConfig()
    own = config.thinking_config
    model = plan.model
    if own is not None and model.known:
        if model.thinking == "none":
            raise LiveConfigError(
                f"agent {agent.name} sets thinking_config, which {model.id} refuses "
                "(it has no thinking setting): remove it from generate_content_config"
            )
        wrong = own.thinking_budget if model.thinking == "level" else own.thinking_level
        if wrong is not None:
            kind = "thinking_level" if model.thinking == "level" else "thinking_budget"
            raise LiveConfigError(f"agent {agent.name}: {model.id} takes {kind} only")
    if plan.thinking is not None:
        agent.generate_content_config = config.model_copy(update={"thinking_config": plan.thinking})


def _configured_tool(tool: ToolUnion, agent: LlmAgent, plan: LivePlan) -> ToolUnion:
    """A function tool with the plan's behavior and scheduling unless it names its own
    (plain functions become `FunctionTool`s, as ADK would make them)."""
    if callable(tool) and not isinstance(tool, FunctionTool) and _is_plain_function(tool):
        tool = FunctionTool(tool)
    if not isinstance(tool, FunctionTool):
        return tool  # built-in tools (search, code) have no declaration to mark
    model = plan.model
    if tool.behavior is types.Behavior.NON_BLOCKING and "non_blocking" not in model.tool_behaviors:
        raise LiveConfigError(
            f"agent {agent.name}: tool {tool.name} is NON_BLOCKING, but {model.id} "
            "takes blocking tool calls only"
        )
    if tool.behavior is None and tool.response_scheduling is None:
        tool.behavior = plan.tool_behavior
        if plan.tool_behavior is not types.Behavior.BLOCKING:
            tool.response_scheduling = plan.tool_scheduling
    return tool


def _is_plain_function(tool: ToolUnion) -> bool:
    return hasattr(tool, "__name__") and hasattr(tool, "__code__")
