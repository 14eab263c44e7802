"""The pre-answer Live API check, with the real google-genai client of ADK's Gemini model.

Pins down: a good upstream passes and is remembered (one connection for two checks);
a bad key, an unknown model, a refused port and an endpoint that never answers TLS
each raise `UpstreamUnavailable` with the right cause, bounded by the timeout; only
Gemini agents are checked.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from google.adk.agents import Agent
from google.adk.models.google_llm import Gemini

from gateway.adk.preflight import LiveCheck, UpstreamUnavailable, live_gemini
from tests.gemini.conftest import LIVE_MODEL
from tests.support.live_api_double import LiveApiDouble


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections (backlog) but never speaks."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


async def test_good_upstream_passes_once_per_ttl(gemini_env: LiveApiDouble) -> None:
    check = LiveCheck(Gemini(model=LIVE_MODEL), timeout_s=5)
    await check.ensure()
    await check.ensure()
    assert len(gemini_env.connections) == 1
    assert gemini_env.connections[0].model == f"models/{LIVE_MODEL}"


async def test_bad_key(gemini_env: LiveApiDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "wrong")
    with pytest.raises(UpstreamUnavailable) as caught:
        await LiveCheck(Gemini(model=LIVE_MODEL), timeout_s=5).ensure()
    assert caught.value.failure.cause == "invalid_credentials"
    assert "invalid API key" in str(caught.value)


async def test_unknown_model(gemini_env: LiveApiDouble) -> None:
    with pytest.raises(UpstreamUnavailable) as caught:
        await LiveCheck(Gemini(model="gemini-no-such-model"), timeout_s=5).ensure()
    assert caught.value.failure.cause == "unknown_model"
    assert caught.value.failure.code == 1008


async def test_refused_port(gemini_env: LiveApiDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f"https://127.0.0.1:{port}")
    with pytest.raises(UpstreamUnavailable) as caught:
        await LiveCheck(Gemini(model=LIVE_MODEL), timeout_s=5).ensure()
    assert caught.value.failure.cause == "unreachable"


async def test_silent_endpoint_is_bounded_by_the_timeout(
    gemini_env: LiveApiDouble, monkeypatch: pytest.MonkeyPatch, silent_port: int
) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f"https://127.0.0.1:{silent_port}")
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable) as caught:
        await LiveCheck(Gemini(model=LIVE_MODEL), timeout_s=1.0).ensure()
    assert caught.value.failure.cause == "unreachable"
    assert time.monotonic() - started < 3.0  # not websockets' 10 s open timeout


def test_only_gemini_agents_are_checked() -> None:
    gemini = Gemini(model=LIVE_MODEL)
    assert live_gemini(Agent(name="g", model=gemini)) is gemini
    assert isinstance(live_gemini(Agent(name="s", model=LIVE_MODEL)), Gemini)
