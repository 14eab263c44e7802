"""A client of the seed sample's WebSocket protocol, in Chromium, against the gateway.

Pins down, for the page in `seed_client/` (which speaks exactly what ADK's
"custom audio streaming" sample speaks, with the same element ids):
- on load it connects `/ws/<digits>?is_audio=false`; a typed question is answered
  with `text/plain` increments that add up to the agent's answer in one paragraph;
- "Start Audio" reconnects with `?is_audio=true`; the fake microphone's question
  reaches the agent as 16 kHz PCM and the agent's words and audio come back
  (`text/plain` transcript increments, `audio/pcm` played by the worklet).
"""

from __future__ import annotations

import pytest

from tests.browser import cdp
from tests.browser.conftest import GatewayStarter

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

PARAGRAPHS = "[...document.querySelectorAll('#messages p')].map(p => p.textContent)"
AGENT_PARAGRAPHS = f"{PARAGRAPHS}.filter(t => t && !t.startsWith('> '))"
TURN_COMPLETE_LOGGED = "window.__turns > 0"
COUNT_TURNS = """(() => { window.__turns = 0; const log = console.log;
  console.log = (...args) => { if (String(args[1]).includes('"turn_complete":true'))
    window.__turns++; log(...args); }; })()"""


async def test_the_seed_client_works_against_ws(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    base = await start_gateway()
    await page.send("Page.addScriptToEvaluateOnNewDocument", {"source": COUNT_TURNS})
    await page.goto(f"{base}/seed")
    await page.wait_for("!document.getElementById('sendButton').disabled", timeout_s=10)
    await page.type_text("#message", "what time is it now")
    await page.click("#sendButton")
    answers = await page.wait_for(f"{AGENT_PARAGRAPHS}.length && {AGENT_PARAGRAPHS}")
    assert answers[0].strip()
    assert await page.evaluate(f"{PARAGRAPHS}[0]") == "> what time is it now"

    await page.wait_for(TURN_COMPLETE_LOGGED)  # switch modes between turns, as a user would

    await page.click("#startAudioButton")
    await page.wait_for(f"!{PARAGRAPHS}.includes('> what time is it now')")  # reconnected
    spoken = await page.wait_for(f"{AGENT_PARAGRAPHS}.length && {AGENT_PARAGRAPHS}", timeout_s=30)
    assert spoken[0].strip()
    assert any("audio/pcm" in line for line in browser.console), "no agent audio arrived"
    assert browser.page_errors == []
