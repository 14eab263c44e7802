"""The agent served when none is configured: a voice agent that tells the time.

Without Gemini credentials it runs the offline live model `local-live` (Whisper
tiny.en and espeak-ng, no network, no API key; `GATEWAY_LOCAL_RECOGNIZER=pocketsphinx`
selects the older, lighter recognizer: `local-live-pocketsphinx`). With them
(`GOOGLE_API_KEY`, or Vertex AI: see docs/gemini-live.md) it is ADK's
`google_search_agent` sample on the configured live model (`GATEWAY_GEMINI_MODEL`),
with the same time tool besides Google Search.
Which one is logged once, at start-up, with how to switch.

ADK plugin: imports google.adk and the gateway's models, tools and Gemini settings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from google.adk.agents import Agent
from google.adk.tools.google_search_tool import google_search

from gateway.adk.live_config import gemini_credentials, load_live_settings, merged_environ
from gateway.agents.tools import get_current_time
from gateway.models import local_live

logger = logging.getLogger(__name__)

#: Which recognizer the offline model uses: "whisper" (default) or "pocketsphinx".
LOCAL_RECOGNIZER_ENV = "GATEWAY_LOCAL_RECOGNIZER"

INSTRUCTION = (
    "You are a friendly voice assistant. Answer briefly and clearly. When asked what "
    "time or what day it is, use the get_current_time tool."
)


def gemini_configured(environ: Mapping[str, str] | None = None) -> bool:
    """True when Gemini credentials are configured (API key, or Vertex AI)."""
    return gemini_credentials(environ).configured


def gemini_model_name(environ: Mapping[str, str] | None = None) -> str:
    """The Gemini Live model (`GATEWAY_GEMINI_MODEL`, see `gateway.adk.live_config`)."""
    return load_live_settings(environ).model


def local_live_model_name(environ: Mapping[str, str] | None = None) -> str:
    """`local-live`, or `local-live-pocketsphinx` with `GATEWAY_LOCAL_RECOGNIZER`."""
    env = merged_environ() if environ is None else environ
    recognizer = (env.get(LOCAL_RECOGNIZER_ENV) or "whisper").strip().lower()
    if recognizer not in local_live.RECOGNIZERS:
        choices = ", ".join(local_live.RECOGNIZERS)
        raise ValueError(f"{LOCAL_RECOGNIZER_ENV}={recognizer!r}: one of {choices}")
    if recognizer == "whisper":
        return local_live.MODEL_NAME
    return f"{local_live.MODEL_NAME}-{recognizer}"


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
            name="google_search_agent",
            model=model,
            description="Agent to answer questions using Google Search.",
            instruction=INSTRUCTION + " Use Google Search for current facts.",
            tools=[get_current_time, google_search],
        )
    model = local_live_model_name(environ)
    load_s = local_live.warm_up(model)
    logger.info(
        "default agent: offline model %s, speech models loaded in %.2f s (set "
        "GOOGLE_API_KEY, or Vertex AI as in docs/gemini-live.md, to use Gemini Live)",
        model,
        load_s,
    )
    return Agent(
        name="gateway_default_agent",
        model=model,
        description="A voice agent that tells the time.",
        instruction=INSTRUCTION,
        tools=[get_current_time],
    )


root_agent = build_default_agent()
