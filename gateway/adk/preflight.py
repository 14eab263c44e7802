"""Check, before a call is answered, that the agent's Gemini Live model can be reached.

ADK reports a bad key, an unknown model or an unreachable endpoint only from inside
`run_live`, after the call was answered. `LiveCheck` opens and closes one Live
connection with the agent's own model client (same credentials, endpoint and TLS
settings ADK will use), bounded in time, and remembers a success for a while so
only the first call in that window pays for it. Agents whose live model is not a
`Gemini` (e.g. the offline scripted model) are not checked.
An ADK-facing helper: imports google.adk and google.genai.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from google.adk.agents import BaseAgent, LlmAgent
from google.adk.models.google_llm import Gemini
from google.genai import types

from gateway.adk import _adk
from gateway.adk.upstream import UpstreamFailure, classify

logger = logging.getLogger(__name__)

#: How long a successful check vouches for the upstream.
CHECK_TTL_S = 300.0


class UpstreamUnavailable(Exception):
    """The Live API refused or could not be reached; `failure` says why."""

    def __init__(self, failure: UpstreamFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def live_gemini(agent: BaseAgent) -> Gemini | None:
    """The Gemini model the agent runs live with, if it is one."""
    if not isinstance(agent, LlmAgent):
        return None
    model = agent.canonical_live_model
    return model if isinstance(model, Gemini) else None


class LiveCheck:
    """Opens one Live connection per `ttl_s` to prove credentials, model and endpoint."""

    def __init__(
        self,
        model: Gemini,
        *,
        timeout_s: float,
        ttl_s: float = CHECK_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._model = model
        self._timeout_s = timeout_s
        self._ttl_s = ttl_s
        self._clock = clock
        self._ok_until = float("-inf")
        self._lock = asyncio.Lock()

    async def ensure(self) -> None:
        """Return when the upstream is known good; raise `UpstreamUnavailable` otherwise."""
        if self._clock() < self._ok_until:
            return
        async with self._lock:  # concurrent first calls share one check
            if self._clock() < self._ok_until:
                return
            await self._check()
            self._ok_until = self._clock() + self._ttl_s

    async def _check(self) -> None:
        config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
        started = self._clock()
        try:
            client = _adk.live_api_client(self._model)  # the client ADK's connect() uses
            async with asyncio.timeout(self._timeout_s):
                async with client.aio.live.connect(model=self._model.model, config=config):
                    pass
        except TimeoutError:
            failure = UpstreamFailure("unreachable")
            logger.warning("Live API check timed out after %.1f s", self._timeout_s)
            raise UpstreamUnavailable(failure) from None
        except Exception as exc:  # boundary: classify whatever the client raised
            failure = classify(exc) or UpstreamFailure("rejected")
            logger.warning("Live API check failed: %s (%s)", failure.cause, type(exc).__name__)
            raise UpstreamUnavailable(failure) from exc
        logger.info("Live API check passed in %.2f s", self._clock() - started)
