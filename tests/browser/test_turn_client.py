"""The web client configures its peer connection from `GET /ice-servers` (Chromium).

A real coturn (`use-auth-secret`) on loopback, the gateway with `--turn-urls` and
`--turn-secret`, and a page whose network only allows relayed media
(`iceTransportPolicy: 'relay'`): without the TURN server the page fetched before its
offer, WebRTC could not connect at all (`test_client.py` shows the fallback then).

Pins down:
- the call connects over WebRTC (no fallback), its selected candidate pair's local
  candidate is a relay candidate;
- coturn allocated for the page's own user, with the credential the gateway minted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.browser import cdp
from tests.browser.conftest import GatewayStarter
from tests.browser.test_client import CONNECTION, RELAY_ONLY, healthz_calls, open_client
from tests.support.fakes import FakeAgentConnector
from tests.support.gateway_process import free_port
from tests.support.turn_server import turn_server

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

TURN_SECRET = "browser-turn-secret"
#: JS: the type of the local candidate of the selected pair (Chromium's getStats).
SELECTED_LOCAL_TYPE = """(async () => {
  const stats = await window.gatewayClient.call.pc.getStats();
  let pairId = null;
  stats.forEach(s => { if (s.type === 'transport' && s.selectedCandidatePairId)
    pairId = s.selectedCandidatePairId; });
  const pair = pairId && stats.get(pairId);
  return pair ? stats.get(pair.localCandidateId).candidateType : null; })()"""


async def test_the_client_calls_through_the_turn_server_it_was_given(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page, tmp_path: Path
) -> None:
    async with turn_server(tmp_path / "coturn", secret=TURN_SECRET, port=free_port()) as coturn:
        base = await start_gateway(
            FakeAgentConnector(), turn_urls=coturn.url(), turn_secret=TURN_SECRET
        )
        await page.send("Page.addScriptToEvaluateOnNewDocument", {"source": RELAY_ONLY})
        await open_client(page, f"{base}/?transport=webrtc&connect_timeout_s=20")
        await page.click("#call-button")
        await page.wait_for(f"{CONNECTION} === 'connected'", timeout_s=25)
        assert await page.evaluate("window.gatewayClient.call.transport") == "webrtc"
        assert await page.wait_for(SELECTED_LOCAL_TYPE, timeout_s=10) == "relay"
        user = await page.evaluate("localStorage.getItem('gateway-user-id')")
        await page.click("#call-button")  # hang up
        await page.wait_for(f"{CONNECTION} === 'idle'", timeout_s=10)
        # The gateway releases its own allocation while the relay still answers.
        async with asyncio.timeout(10):
            while await healthz_calls(base):
                await asyncio.sleep(0.1)
    relay_log = coturn.output()
    assert f":{user}>: incoming packet ALLOCATE processed, success" in relay_log
    assert browser.page_errors == []
