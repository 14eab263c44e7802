"""The agent served when none is configured: a voice agent that tells the time.

Without Gemini credentials it runs the offline live model `local-live` (pocketsphinx
and espeak-ng, no network, no API key). With them (`GOOGLE_API_KEY`, or
`GOOGLE_GENAI_USE_VERTEXAI=TRUE` plus a project) it runs a Gemini Live model and also
gets Google Search, as in ADK's `google_search_agent` sample. Which one is logged
once, at start-up, with how to switch.

ADK plugin: imports google.adk and the gateway's models and tools.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from google.adk.agents import Agent
from google.adk.tools.google_search_tool import google_search

from gateway.agents.tools import get_current_time
from gateway.models import local_live

logger = logging.getLogger(__name__)

#: The Gemini Live model used when `GEMINI_LIVE_MODEL` is not set.
DEFAULT_GEMINI_LIVE_MODEL = "gemini-2.5-flash-native-audio-preview-09-2025"
DEFAULT_VERTEX_LIVE_MODEL = "gemini-live-2.5-flash-native-audio"

INSTRUCTION = (
    "You are a friendly voice assistant. Answer briefly and clearly. When asked what "
    "time or what day it is, use the get_current_time tool."
)


def _uses_vertex(environ: Mapping[str, str]) -> bool:
    return environ.get("GOOGLE_GENAI_USE_VERTEXAI", "").strip().lower() in ("true", "1")


def gemini_configured(environ: Mapping[str, str] | None = None) -> bool:
    """True when Gemini credentials are configured (API key, or Vertex AI)."""
    env = os.environ if environ is None else environ
    return bool(env.get("GOOGLE_API_KEY", "").strip()) or _uses_vertex(env)


def gemini_model_name(environ: Mapping[str, str] | None = None) -> str:
    """The Gemini Live model: `GEMINI_LIVE_MODEL`, else a native-audio default."""
    env = os.environ if environ is None else environ
    if name := env.get("GEMINI_LIVE_MODEL", "").strip():
        return name
    return DEFAULT_VERTEX_LIVE_MODEL if _uses_vertex(env) else DEFAULT_GEMINI_LIVE_MODEL


def build_default_agent(environ: Mapping[str, str] | None = None) -> Agent:
    """The default agent for this environment (Gemini Live, or the offline model)."""
    if gemini_configured(environ):
        model = gemini_model_name(environ)
        logger.info(
            "default agent: Gemini Live model %s (unset GOOGLE_API_KEY and "
            "GOOGLE_GENAI_USE_VERTEXAI to run the offline model instead)",
            model,
        )
        return Agent(
            name="gateway_default_agent",
            model=model,
            description="A voice agent that tells the time and searches the web.",
            instruction=INSTRUCTION + " Use Google Search for anything current.",
            tools=[get_current_time, google_search],
        )
    load_s = local_live.warm_up()
    logger.info(
        "default agent: offline model %s, speech models loaded in %.2f s (set "
        "GOOGLE_API_KEY, or GOOGLE_GENAI_USE_VERTEXAI=TRUE, to use Gemini Live)",
        local_live.MODEL_NAME,
        load_s,
    )
    return Agent(
        name="gateway_default_agent",
        model=local_live.MODEL_NAME,
        description="A voice agent that tells the time.",
        instruction=INSTRUCTION,
        tools=[get_current_time],
    )


root_agent = build_default_agent()
