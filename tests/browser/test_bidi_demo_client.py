"""A client of ADK's bidi-demo WebSocket protocol, in Chromium, against the gateway.

Pins down, for the page in `bidi_demo_client/` (written from the streaming guide's
description of the demo's client, same element ids), with the real ADK runner on
`scripted-live` behind the gateway:
- on load it connects `/ws/demo-user/demo-session-<random>`; a typed question is
  answered in the agent's bubble from `outputTranscription` events, with the agent's
  speech as `inlineData` the page decodes from base64url, then `turnComplete`;
- "Start Audio" sends the fake microphone's question as binary 16 kHz PCM frames on
  the same socket: the caller's words come back as `inputTranscription` (author
  "user") and the agent answers them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from google.adk.agents import Agent
from google.adk.sessions import InMemorySessionService

import gateway.models.scripted  # noqa: F401  (registers scripted-live)
from gateway.agent_bridge import AdkAgentConnector
from tests.browser import cdp
from tests.browser.conftest import GatewayStarter

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

CLIENT = Path(__file__).resolve().parent / "bidi_demo_client"
AGENT_WORDS = (
    "[...document.querySelectorAll('.message.agent .bubble-text')].map(p => p.textContent)"
)
USER_WORDS = "[...document.querySelectorAll('.message.user .bubble-text')].map(p => p.textContent)"


@pytest.fixture
async def connector() -> AsyncIterator[AdkAgentConnector]:
    agent = Agent(name="demo_agent", model="scripted-live", instruction="Be brief.")
    adk = AdkAgentConnector(agent, InMemorySessionService(), app_name="bidi-browser")
    yield adk
    await adk.close()


def serve_client(app: web.Application) -> None:
    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(CLIENT / "index.html")

    app.router.add_get("/bidi-demo", index)
    app.router.add_static("/bidi-demo/", CLIENT)


async def test_a_bidi_demo_client_talks_to_the_gateway(
    start_gateway: GatewayStarter,
    connector: AdkAgentConnector,
    browser: cdp.Browser,
    page: cdp.Page,
) -> None:
    base = await start_gateway(connector, routes=serve_client)
    await page.goto(f"{base}/bidi-demo")
    await page.wait_for("!document.getElementById('sendButton').disabled", timeout_s=10)
    await page.type_text("#message", "what time is it now")
    await page.click("#sendButton")
    await page.wait_for("window.__turns > 0", timeout_s=10)
    assert await page.evaluate(AGENT_WORDS) == ["You said: what time is it now"]
    assert await page.evaluate(USER_WORDS) == ["what time is it now"]
    # 1.5 s of 24 kHz s16 speech, decoded from base64url by the page
    assert await page.evaluate("window.__audioBytes") == 72_000

    await page.click("#startAudioButton")
    heard = await page.wait_for(f"{USER_WORDS}.filter(t => t.startsWith('(speech'))", timeout_s=15)
    answered = await page.wait_for(f"{AGENT_WORDS}.filter(t => t.startsWith('I heard'))")
    assert heard[0].startswith("(speech ")
    assert answered[0] == f"I heard {heard[0]}"
    assert browser.page_errors == []
