"""A fast, deterministic agent for load tests and benchmarks: `scripted-live` behind ADK.

`python -m gateway --agent gateway.agents.scripted:root_agent` serves it. It answers
each utterance with a short tone and a transcript at almost no CPU cost, so what a
capacity sweep measures is the gateway (and ADK's live flow), not a model.
"""

from __future__ import annotations

from google.adk.agents import Agent

from gateway.models import scripted

root_agent = Agent(
    name="scripted_agent",
    model=scripted.MODEL_NAME,
    description="Answers every utterance with a short tone (benchmarks, load tests).",
    instruction="Answer briefly.",
)
