"""The gateway as an operator runs it (`python -m gateway`), with the page it serves.

Pins down: the command-line gateway serves the web client at `/`, and a voice call
from it over WebRTC reaches `connected`, with the spoken question transcribed and
the agent answering; hang-up leaves no call behind (`/healthz`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.browser import cdp
from tests.browser.test_client import CONNECTION, assert_voice_conversation, open_client
from tests.support import REPO_ROOT

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]
STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def cli_gateway() -> AsyncIterator[str]:
    """`python -m gateway` on a free loopback port, ICE on loopback; stopped after."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port),
        "--ice-addresses", "127.0.0.1", "--agent", "gateway.agents.default:root_agent",
        cwd=REPO_ROOT, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        await asyncio.wait_for(_healthy(base, process), STARTUP_TIMEOUT_S)
        yield base
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _healthy(base: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as http:
        while process.returncode is None:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise AssertionError(f"python -m gateway exited with {process.returncode}")


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
