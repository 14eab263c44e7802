"""The browser client when its gateway drains: it moves its call (real Chromium).

Two in-process gateways share one conversation store (one connector, as two
instances share PostgreSQL) behind one URL: a small aiohttp reverse proxy written
here, a test double of a load balancer that sends every request to the first
gateway whose `/readyz` answers 200. The page is served through it. Pins down:
- `going_away` on the data channel makes the client offer again with its session id
  through the same URL; the proxy gives the offer to the other gateway; the new call
  connects before the deadline and the old one is hung up (make-before-break); the
  page says the call moved; the audio gap the user hears is measured (reported in
  `test-artifacts/browser/`) and is shorter than the deadline;
- with no other gateway, the re-offers are refused (503 `draining`): the page says
  so clearly and keeps trying until the deadline (each try counted by the gateway).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.agent_api import AgentAudio, AgentEvent, Modality
from tests.browser import cdp
from tests.browser.conftest import ARTIFACTS, GatewayStarter
from tests.support.fakes import agent_tone

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

CONNECTION = "document.getElementById('connection-state').dataset.state"
NOTICE = (
    "(document.getElementById('notice').hidden ? ''"
    " : document.getElementById('notice-text').textContent)"
)
#: Every 20 ms, the level of the agent audio the page plays (the call whose track is
#: in the audio element), with the time: `window.__levels`.
RECORD_LEVELS = """(() => { window.__levels = [];
  setInterval(async () => {
    const stream = document.getElementById('agent-audio').srcObject;
    const id = stream?.getAudioTracks()[0]?.id;
    const calls = [window.gatewayClient.call, window.gatewayClient.moving].filter(Boolean);
    const playing = calls.find((c) => c.pc?.getReceivers().some((r) => r.track?.id === id));
    window.__levels.push([performance.now(), playing ? await playing.agentLevel() : 0]);
  }, 20); })()"""
#: WebRTC's audioLevel (0..1) of the agent's tone is ~0.2; silence is ~0.
HEARD_LEVEL = 0.02
TONE_CHUNK_S = 0.1


@dataclass
class ToneSession:
    """An agent that talks without pause: a tone, paced at real time."""

    session_id: str
    modality: Modality

    def send_audio(self, pcm: bytes) -> None:
        pass

    def send_text(self, text: str) -> None:
        pass

    async def events(self) -> AsyncIterator[AgentEvent]:
        while True:
            yield AgentAudio(agent_tone(TONE_CHUNK_S))
            await asyncio.sleep(TONE_CHUNK_S)


@dataclass
class ToneConnector:
    """One conversation store for both gateways: a session id one of them made is
    known to the other."""

    sessions: list[str] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def open_session(
        self, *, user_id: str, session_id: str | None, modality: Modality, call_id: str = ""
    ) -> AsyncIterator[ToneSession]:
        session_id = session_id or f"conversation-{len(self.sessions) + 1}"
        self.sessions.append(session_id)
        yield ToneSession(session_id, modality)


HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}


@contextlib.asynccontextmanager
async def balancer(backends: list[str], *, probe: bool = True) -> AsyncIterator[str]:
    """A reverse proxy on a free port: each request goes to the first backend whose
    `/readyz` is 200 (as a balancer's readiness probe decides; `probe=False`: the
    first backend, as before a probe has run); its URL."""
    http = aiohttp.ClientSession(auto_decompress=False)

    async def ready_backend() -> str:
        if not probe:
            return backends[0]
        for base in backends:
            async with http.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return base
        raise web.HTTPServiceUnavailable(text="no backend is ready")

    async def forward(request: web.Request) -> web.StreamResponse:
        base = await ready_backend()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with http.request(
            request.method,
            base + request.path_qs,
            headers=headers,  # Host kept: the gateway checks Origin against it
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            body = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=upstream.status, headers=out, body=body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()
        await http.close()


async def calls_on(base: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/healthz") as response:
        calls: int = (await response.json(content_type=None))["calls"]
        return calls


async def drain(base: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(f"{base}/admin/drain") as response:
        assert response.status == 202


def longest_silence_s(levels: list[list[float]], after_ms: float) -> float:
    """The longest stretch without agent audio in the page, after `after_ms`,
    between two moments it was heard."""
    heard = [t for t, level in levels if t >= after_ms and level > HEARD_LEVEL]
    gaps = [b - a for a, b in itertools.pairwise(heard)]
    return max(gaps, default=0.0) / 1000


async def test_going_away_moves_the_call_to_the_other_gateway(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    connector = ToneConnector()
    first = await start_gateway(connector, drain_timeout=20)
    second = await start_gateway(connector)
    async with balancer([first, second]) as url:
        await page.goto(f"{url}/?transport=webrtc")
        await page.wait_for(f"{CONNECTION} === 'idle'")
        await page.click("#call-button")
        await page.wait_for(f"{CONNECTION} === 'connected'", timeout_s=20)
        session_id = await page.wait_for("window.gatewayClient.state.sessionId", timeout_s=10)
        location = await page.evaluate("window.gatewayClient.call.location")
        assert await calls_on(first) == 1
        await page.evaluate(RECORD_LEVELS)
        await page.wait_for(  # the agent is heard before the drain
            f"window.__levels.some(([t, l]) => l > {HEARD_LEVEL})", timeout_s=10
        )
        drained_at = await page.evaluate("performance.now()")
        await drain(first)
        await page.wait_for(
            f"window.gatewayClient.call.location !== {location!r} && {CONNECTION} === 'connected'",
            timeout_s=15,
        )
        assert await page.evaluate("window.gatewayClient.state.sessionId") == session_id
        assert connector.sessions[-1] == session_id  # the second gateway continued it
        assert await calls_on(second) == 1
        moved_at = await page.evaluate("performance.now()")
        await page.wait_for(  # and the agent is heard on the new call
            f"window.__levels.some(([t, l]) => t > {moved_at} && l > {HEARD_LEVEL})",
            timeout_s=10,
        )
        await asyncio.sleep(1.0)
        levels = await page.evaluate("window.__levels")
        gap_s = longest_silence_s(levels, drained_at)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "drain-move-gap.json").write_text(
            json.dumps({"longest_silence_s": gap_s, "move_s": (moved_at - drained_at) / 1000})
        )
        print(f"audio gap on the move: {gap_s:.3f} s (move took {moved_at - drained_at:.0f} ms)")
        assert gap_s < 20, "the call moved only when the draining gateway hung up"
        conversation = await page.evaluate("document.getElementById('conversation').innerText")
        assert "moved to another one" in conversation
    assert browser.page_errors == []


async def test_with_no_other_gateway_the_page_says_so_and_keeps_trying(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    only = await start_gateway(ToneConnector(), drain_timeout=6)
    async with balancer([only], probe=False) as url:
        await page.goto(f"{url}/?transport=webrtc")
        await page.wait_for(f"{CONNECTION} === 'idle'")
        await page.click("#call-button")
        await page.wait_for(f"{CONNECTION} === 'connected'", timeout_s=20)
        # Drain without the balancer taking it out, as while probes have not run yet.
        await drain(only)
        notice = await page.wait_for(
            f"{NOTICE}.includes('no other server took the call') && {NOTICE}", timeout_s=10
        )
        assert "Trying again" in notice
        tries = await refused_draining(only)
        async with asyncio.timeout(10):
            while await refused_draining(only) < tries + 2:  # it keeps trying
                await asyncio.sleep(0.2)
    assert browser.page_errors == []


async def refused_draining(base: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gateway_calls_refused_total" and sample.labels == {
                "reason": "draining"
            }:
                return sample.value
    return 0.0
