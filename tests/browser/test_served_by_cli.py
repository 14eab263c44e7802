"""The gateway as an operator runs it (`python -m gateway`), with the page it serves.

Pins down: the command-line gateway serves the web client at `/`, and a voice call
from it over WebRTC reaches `connected`, with the spoken question transcribed and
the agent answering; hang-up leaves no call behind (`/healthz`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.browser import cdp
from tests.browser.test_client import CONNECTION, assert_voice_conversation, open_client
from tests.support.gateway_process import serving

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]


@pytest.fixture
async def cli_gateway() -> AsyncIterator[str]:
    """`python -m gateway` on a free loopback port, ICE on loopback; stopped after."""
    async with serving("--agent", "gateway.agents.default:root_agent") as gateway:
        yield gateway.base


async def test_python_m_gateway_serves_a_working_client(
    cli_gateway: str, browser: cdp.Browser, page: cdp.Page
) -> None:
    await open_client(page, f"{cli_gateway}/")
    await page.click("#call-button")
    await assert_voice_conversation(page)
    assert await page.evaluate("window.gatewayClient.call.pc.connectionState") == "connected"
    await page.click("#call-button")
    await page.wait_for(f"{CONNECTION} === 'idle'")
    async with aiohttp.ClientSession() as http:
        for _ in range(50):
            async with http.get(f"{cli_gateway}/healthz") as response:
                if (await response.json())["calls"] == 0:
                    break
            await asyncio.sleep(0.1)
        async with http.get(f"{cli_gateway}/healthz") as response:
            assert (await response.json())["calls"] == 0
    assert browser.page_errors == []
