"""Fixtures for the Gemini Live tests: a TLS Live API double and a client pointed at it.

The real google-genai client (under ADK's `Gemini` model) reaches the double with no
code change, through the variables it reads when it is built: `GOOGLE_API_KEY`,
`GOOGLE_GEMINI_BASE_URL` and `SSL_CERT_FILE`. The double plays `gemini-3.8-live` unless
a test module parametrizes `generation` (the end-to-end suites run against both
current generations).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.adk.agents import Agent
from google.adk.models.google_llm import Gemini
from google.adk.sessions import InMemorySessionService

from gateway.adk.live_config import LiveSettings
from gateway.agent_bridge import AdkAgentConnector
from tests.support.live_api_double import (
    GENERATION_MODELS,
    Generation,
    LiveApiDouble,
    SelfSignedCert,
    make_self_signed_cert,
)

GOOD_KEY = "test-key-good"
LIVE_MODEL = GENERATION_MODELS["3.8"]
#: Both current generations, for `pytest.mark.parametrize("generation", GENERATIONS)`.
GENERATIONS: tuple[Generation, ...] = ("3.8", "3.1")


@pytest.fixture
def generation() -> Generation:
    """Which model the double plays (parametrize to run a module against others)."""
    return "3.8"


@pytest.fixture
def live_model_id(generation: Generation) -> str:
    return GENERATION_MODELS[generation]


@pytest.fixture(scope="session")
def double_cert(tmp_path_factory: pytest.TempPathFactory) -> SelfSignedCert:
    return make_self_signed_cert(Path(tmp_path_factory.mktemp("live-double-cert")))


@pytest.fixture
async def live_double(
    double_cert: SelfSignedCert, generation: Generation
) -> AsyncIterator[LiveApiDouble]:
    async with LiveApiDouble(
        double_cert, accepted_api_keys=frozenset({GOOD_KEY}), generation=generation
    ) as double:
        yield double


@pytest.fixture
def gemini_env(
    live_double: LiveApiDouble, double_cert: SelfSignedCert, monkeypatch: pytest.MonkeyPatch
) -> LiveApiDouble:
    """Point google-genai at the double with a key it accepts."""
    monkeypatch.setenv("GOOGLE_API_KEY", GOOD_KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", live_double.base_url)
    monkeypatch.setenv("SSL_CERT_FILE", str(double_cert.cert_path))
    monkeypatch.delenv("GOOGLE_GENAI_USE_VERTEXAI", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    return live_double


@pytest.fixture
async def gemini_connector(
    gemini_env: LiveApiDouble, live_model_id: str
) -> AsyncIterator[AdkAgentConnector]:
    """A connector with a Gemini agent on the double's model (quick reconnects)."""
    agent = Agent(name="gemini_agent", model=Gemini(model=live_model_id), instruction="Be brief.")
    live = LiveSettings(model=live_model_id, connect_timeout_s=1.5, reconnect_backoff_s=0.05)
    connector = AdkAgentConnector(agent, InMemorySessionService(), app_name="t", live=live)
    yield connector
    await connector.close()
