"""`GET /metrics` of the real `python -m gateway` process, read by prometheus-client's parser.

Pins down, with a real aiortc caller (scripted agent), for one process and for
`--workers 2` (where the call may land on either worker and the scrape on the other):
- the exposition parses; a call moves `gateway_calls_admitted_total` by one,
  `gateway_calls_live` to 1 and back to 0 once hung up, and adds one observation
  to `gateway_call_duration_seconds{transport="webrtc"}`; the stalls, reconnects,
  limit and refusal series are there from the start (at 0);
- every worker's CPU seconds (`gateway_worker_cpu_seconds_total`) and the drain
  state (`gateway_draining` 0, then 1 after SIGTERM while a call holds the drain);
- with auth on, `/metrics` needs the admin key (401 without, 403 for a caller).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.auth.credentials import mint_token
from tests.support.gateway_process import GatewayProcess, free_port, serving
from tests.support.peers import HeadlessCaller

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SCRIPTED = "gateway.agents.scripted:root_agent"
SDP = {"Content-Type": "application/sdp"}
SECRET = "s" * 40
API_KEY = "k" * 24

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@asynccontextmanager
async def gateway(tmp_path: Path, *args: str, workers: int) -> AsyncIterator[GatewayProcess]:
    port = free_port()
    async with serving(
        "--agent", SCRIPTED, "--session-url", "memory://", "--workers", str(workers), *args,
        log=tmp_path / f"gateway-{port}.log", workers=workers, port=port,
    ) as process:  # fmt: skip
        yield process


async def scrape(
    http: aiohttp.ClientSession, base: str, headers: dict[str, str] | None = None
) -> Samples:
    """Every sample of `/metrics`, by name and labels."""
    async with http.get(f"{base}/metrics", headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def until(http: aiohttp.ClientSession, base: str, name: str, wanted: float) -> Samples:
    async with asyncio.timeout(10):
        while value(samples := await scrape(http, base), name) != wanted:
            await asyncio.sleep(0.1)
    return samples


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_call_moves_the_call_metrics(tmp_path: Path, workers: int) -> None:
    async with gateway(tmp_path, workers=workers) as gw, aiohttp.ClientSession() as http:
        before = await scrape(http, gw.base)
        assert value(before, "gateway_calls_live") == 0
        assert value(before, "gateway_draining") == 0
        for name, labels in [
            ("gateway_upstream_reconnects_total", {}),
            ("gateway_agent_stalls_total", {"kind": "no_reply"}),
            ("gateway_agent_recovery_actions_total", {"action": "rotations"}),
            ("gateway_limit_events_total", {"limit": "ended_idle"}),
            ("gateway_calls_refused_total", {"reason": "at_capacity"}),
        ]:
            assert value(before, name, **labels) == 0
        cpu = {labels for name, labels in before if name == "gateway_worker_cpu_seconds_total"}
        assert len(cpu) == workers
        assert value(before, "gateway_workers") == workers
        caller = HeadlessCaller()
        try:
            async with http.post(
                f"{gw.base}/calls", data=await caller.offer(), headers=SDP
            ) as response:
                assert response.status == 201
                await caller.accept(await response.text())
                location = response.headers["Location"]
            await caller.wait_connected(20)
            during = await until(http, gw.base, "gateway_calls_live", 1)
            admitted = value(during, "gateway_calls_admitted_total")
            assert admitted == value(before, "gateway_calls_admitted_total") + 1
            async with http.delete(gw.base + location) as response:
                assert response.status == 204
        finally:
            await caller.close()
        after = await until(http, gw.base, "gateway_calls_live", 0)
        count = ("gateway_call_duration_seconds_count", {"transport": "webrtc"})
        assert value(after, count[0], **count[1]) == value(before, count[0], **count[1]) + 1
        assert value(after, "gateway_call_duration_seconds_sum", transport="webrtc") > 0
        assert value(after, "gateway_calls_admitted_total") == admitted


async def test_drain_state_and_admin_only(tmp_path: Path) -> None:
    auth = ("--jwt-secret", SECRET, "--api-keys", API_KEY, "--drain-timeout", "30")
    admin = {"Authorization": f"Bearer {API_KEY}"}
    user = {"Authorization": f"Bearer {mint_token(SECRET, 'alice', session_id=None, ttl_s=60)}"}
    async with gateway(tmp_path, *auth, workers=2) as gw, aiohttp.ClientSession() as http:
        async with http.get(f"{gw.base}/metrics") as response:
            assert response.status == 401
        async with http.get(f"{gw.base}/metrics", headers=user) as response:
            assert response.status == 403
        caller = HeadlessCaller()
        try:
            async with http.post(
                f"{gw.base}/calls", data=await caller.offer(), headers={**SDP, **user}
            ) as response:
                assert response.status == 201
                await caller.accept(await response.text())
            await caller.wait_message(type="session", limit_s=20)
            gw.process.send_signal(signal.SIGTERM)
            await caller.wait_message(type="going_away", limit_s=5)
            samples = await scrape(http, gw.base, admin)
            assert value(samples, "gateway_draining") == 1
            assert value(samples, "gateway_calls_live") == 1
        finally:
            await caller.close()
        assert await asyncio.wait_for(gw.process.wait(), 60) == 0
