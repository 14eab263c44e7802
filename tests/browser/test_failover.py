"""Crash failover in the browser: a worker killed under a live call (kill -9).

Pins down, with `python -m gateway --workers 2` (scripted agent, sessions in one SQLite
file both workers share) serving the web client, and real headless Chromium:
- the client notices the dead worker by the silence of its RTP (the gateway sends a
  packet every 20 ms for the whole call, silence included: docs/protocol.md,
  "Noticing a dead gateway"), well before ICE consent would expire (~30 s);
- it re-offers with its session id and is back in a call, on the other worker, with
  the same session; the conversation goes on (the agent answers again);
- the times (kill to "reconnecting", kill to "connected") are printed for the report;
  the only bound asserted is a generous one that ICE-consent-only detection misses.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.browser import cdp
from tests.browser.test_client import AGENT_SAID, CONNECTION, open_client
from tests.support.gateway_process import GatewayProcess, serving

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

#: Generous bounds from the kill, in seconds. Measured here before the client watched
#: its RTP: Chromium's ICE said "disconnected" after 5.8 s, the client gave it 4 s more
#: and was back in a call after 12.3-12.5 s; with the watch: 2.1-2.3 s and 2.3-4.0 s.
NOTICED_BOUND_S = 5.0
BACK_IN_CALL_BOUND_S = 10.0
#: Records each connection state the page shows, with its wall-clock time (ms).
# Every change of the connection indicator, with its time (a MutationObserver sees each
# one as it happens; a polling timer can fall behind on a busy machine).
WATCH_CONNECTION = """(() => { const el = document.getElementById('connection-state');
  window.__connection = [[performance.timeOrigin + performance.now(), el.dataset.state]];
  new MutationObserver(() => window.__connection.push(
    [performance.timeOrigin + performance.now(), el.dataset.state])
  ).observe(el, { attributes: true, attributeFilter: ['data-state'] }); })()"""


@pytest.fixture
async def two_workers(tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    async with serving(
        "--agent", "gateway.agents.scripted:root_agent",
        "--session-url", f"sqlite+aiosqlite:///{tmp_path}/sessions.db",
        "--workers", "2",
        log=tmp_path / "gateway.log", workers=2,
    ) as gateway:  # fmt: skip
        yield gateway


async def owner_pid(gateway: GatewayProcess) -> int:
    """The worker with the one live call (from `/stats`)."""
    async with asyncio.timeout(10):
        while True:
            owners = [w["pid"] for w in (await gateway.get("/stats"))["workers"] if w["calls"]]
            if len(owners) == 1:
                return int(owners[0])
            await asyncio.sleep(0.1)


async def test_a_killed_worker_s_caller_is_back_in_the_same_session(
    two_workers: GatewayProcess, browser: cdp.Browser, page: cdp.Page
) -> None:
    await open_client(page, f"{two_workers.base}/")
    await page.click("#call-button")
    await page.wait_for(f"{CONNECTION} === 'connected'", timeout_s=20)
    await page.wait_for(f"{AGENT_SAID}.length", timeout_s=25)  # the scripted agent answers
    session_id = await page.wait_for("window.gatewayClient.state.sessionId", timeout_s=10)
    location = await page.evaluate("window.gatewayClient.call.location")
    answers = len(await page.evaluate(AGENT_SAID))
    victim = await owner_pid(two_workers)
    await page.evaluate(WATCH_CONNECTION)
    killed_at = time.time() * 1000
    os.kill(victim, signal.SIGKILL)

    await page.wait_for(
        f"{CONNECTION} === 'connected' && window.gatewayClient.call.location !== {location!r}",
        timeout_s=40,
    )
    seen: list[tuple[float, str]] = await page.evaluate("window.__connection")
    lost = next(i for i, (_, state) in enumerate(seen) if state != "connected")
    noticed = (seen[lost][0] - killed_at) / 1000
    back = (next(at for at, state in seen[lost:] if state == "connected") - killed_at) / 1000
    print(f"\nkill -9 to {seen[lost][1]!r}: {noticed:.2f} s; to 'connected': {back:.2f} s")
    assert noticed < NOTICED_BOUND_S, seen
    assert back < BACK_IN_CALL_BOUND_S, seen
    assert await page.evaluate("window.gatewayClient.state.sessionId") == session_id
    assert await owner_pid(two_workers) != victim  # the surviving (or restarted) worker
    # The conversation goes on: the agent answers the next utterance on the new call.
    await page.wait_for(f"{AGENT_SAID}.length > {answers}", timeout_s=25)
    assert browser.page_errors == []
