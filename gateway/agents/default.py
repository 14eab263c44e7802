"""The agent served when none is configured.

With Gemini credentials in the environment (`GOOGLE_API_KEY`, or Vertex AI: see
docs/gemini-live.md) it is ADK's `google_search_agent` sample: the configured live
model (`GATEWAY_GEMINI_MODEL`) with the Google Search tool. Without credentials it
answers with the offline scripted model, so the gateway works with no network.
"""

from __future__ import annotations

from google.adk.agents import Agent
from google.adk.tools.google_search_tool import google_search

import gateway.models.scripted  # noqa: F401  (registers `scripted-live`)
from gateway.adk.live_config import gemini_credentials, load_live_settings


def build_default_agent() -> Agent:
    """The Google Search agent on Gemini when configured, else the scripted model."""
    if gemini_credentials().configured:
        return Agent(
            name="google_search_agent",
            model=load_live_settings().model,
            description="Agent to answer questions using Google Search.",
            instruction="Answer the caller briefly; use Google Search for current facts.",
            tools=[google_search],
        )
    return Agent(
        name="gateway_default_agent",
        model="scripted-live",
        description="A voice agent that answers briefly.",
        instruction="Answer the caller briefly and clearly.",
    )


root_agent = build_default_agent()
