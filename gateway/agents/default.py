"""The agent served when none is configured.

Until the offline live model lands, it answers with the scripted test model.
"""

from __future__ import annotations

from google.adk.agents import Agent

import gateway.models.scripted  # noqa: F401  (registers `scripted-live`)

root_agent = Agent(
    name="gateway_default_agent",
    model="scripted-live",
    description="A voice agent that answers briefly.",
    instruction="Answer the caller briefly and clearly.",
)
