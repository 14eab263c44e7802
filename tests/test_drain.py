"""Drain on SIGTERM and `POST /admin/drain`, with the real `python -m gateway` process.

Pins down, with real aiortc callers over loopback (scripted agent):
- before: `/readyz` 200 `ready` with the session store checked;
- SIGTERM: `/readyz` 503 `draining` at once, a new offer 503 `draining` with
  `Retry-After`, and the live caller gets `going_away` with its own session id and
  the seconds left; the gateway stays up while the call lives and exits 0 as soon
  as the caller hangs up, long before `--drain-timeout`;
- a caller that stays is hung up at the deadline and the gateway exits 0;
- `--workers 2`: every worker's caller is told, every worker refuses, exit 0; a
  second SIGTERM to the supervisor cuts the drain short (exit 0, callers hung up);
- `POST /admin/drain`: 401 without a key and 403 with a caller's token when auth is
  on; with the admin key 202, then the same drain and exit 0.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.auth.credentials import mint_token
from tests.support.gateway_process import GatewayProcess, free_port, serving
from tests.support.peers import HeadlessCaller

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SCRIPTED = "gateway.agents.scripted:root_agent"
SDP = {"Content-Type": "application/sdp"}
SECRET = "s" * 40
API_KEY = "k" * 24


@asynccontextmanager
async def gateway(
    tmp_path: Path, *args: str, workers: int = 1, drain_s: float = 60
) -> AsyncIterator[GatewayProcess]:
    port = free_port()
    async with serving(
        "--agent", SCRIPTED, "--session-url", "memory://", "--workers", str(workers),
        "--drain-timeout", str(drain_s), *args,
        log=tmp_path / f"gateway-{port}.log", workers=workers, port=port,
    ) as process:  # fmt: skip
        yield process


async def call(http: aiohttp.ClientSession, base: str, headers: dict[str, str] | None = None
               ) -> tuple[HeadlessCaller, str]:  # fmt: skip
    """A connected caller and its session id."""
    caller = HeadlessCaller()
    async with http.post(
        f"{base}/calls", data=await caller.offer(), headers={**SDP, **(headers or {})}
    ) as response:
        assert response.status == 201, await response.text()
        await caller.accept(await response.text())
        caller.location = response.headers["Location"]
    session = await caller.wait_message(type="session", limit_s=20)
    return caller, str(session["session_id"])


async def readyz(http: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{base}/readyz") as response:
        body: dict[str, Any] = await response.json(content_type=None)
        return response.status, body


async def until_draining(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    """`/readyz` once the signal has landed (it is delivered asynchronously)."""
    async with asyncio.timeout(5):
        while True:
            status, body = await readyz(http, base)
            if status == 503:
                return body
            await asyncio.sleep(0.02)


async def assert_offer_refused(http: aiohttp.ClientSession, base: str) -> None:
    caller = HeadlessCaller()
    try:
        async with http.post(f"{base}/calls", data=await caller.offer(), headers=SDP) as response:
            assert response.status == 503
            assert int(response.headers["Retry-After"]) >= 1
            assert response.content_type == "application/problem+json"
            assert (await response.json(content_type=None))["code"] == "draining"
    finally:
        await caller.close()


async def hang_up(
    http: aiohttp.ClientSession,
    base: str,
    caller: HeadlessCaller,
    headers: dict[str, str] | None = None,
) -> None:
    async with http.delete(f"{base}{caller.location}", headers=headers) as response:
        assert response.status == 204
    await caller.close()


async def test_sigterm_refuses_tells_the_caller_and_exits_once_the_call_ends(
    tmp_path: Path,
) -> None:
    async with gateway(tmp_path, drain_s=60) as gw, aiohttp.ClientSession() as http:
        status, body = await readyz(http, gw.base)
        assert (status, body["state"], body["checks"]) == (200, "ready", {"session_store": "ok"})
        caller, session_id = await call(http, gw.base)
        gw.process.send_signal(signal.SIGTERM)
        body = await until_draining(http, gw.base)
        assert body["state"] == body["code"] == "draining"
        assert body["status"] == 503  # an RFC 9457 problem, as every error
        assert body["reasons"]
        await assert_offer_refused(http, gw.base)
        going_away = await caller.wait_message(type="going_away", limit_s=5)
        assert going_away["session_id"] == session_id
        assert 0 < going_away["deadline_s"] <= 60
        await asyncio.sleep(1.0)
        assert gw.process.returncode is None, "the gateway left before its caller"
        await hang_up(http, gw.base, caller)
        # Far sooner than the 60 s deadline: the drain ends with its last call.
        assert await asyncio.wait_for(gw.process.wait(), 20) == 0
    assert "Traceback" not in gw.output()


async def test_the_deadline_hangs_up_the_calls_left(tmp_path: Path) -> None:
    async with gateway(tmp_path, drain_s=2) as gw, aiohttp.ClientSession() as http:
        caller, session_id = await call(http, gw.base)
        try:
            gw.process.send_signal(signal.SIGTERM)
            going_away = await caller.wait_message(type="going_away", limit_s=5)
            assert going_away["session_id"] == session_id
            assert going_away["deadline_s"] <= 2
            assert await asyncio.wait_for(gw.process.wait(), 20) == 0
            async with asyncio.timeout(10):  # hung up: the caller's connection ends
                while caller.pc.connectionState not in ("closed", "failed", "disconnected"):
                    await asyncio.sleep(0.1)
        finally:
            await caller.close()
    assert "hanging up 1 sessions" in gw.output()


async def test_every_worker_drains(tmp_path: Path) -> None:
    async with gateway(tmp_path, workers=2) as gw, aiohttp.ClientSession() as http:
        assert (await readyz(http, gw.base))[0] == 200
        callers = []
        for _ in range(4):  # spread over both workers (least loaded first)
            callers.append(await call(http, gw.base))
        owners = {(await gw.get("/stats"))["workers"][i]["calls"] for i in range(2)}
        assert owners == {2}, owners
        gw.process.send_signal(signal.SIGTERM)
        await until_draining(http, gw.base)
        for _ in range(4):  # whichever worker takes the connection refuses
            await assert_offer_refused(http, gw.base)
        for caller, session_id in callers:
            going_away = await caller.wait_message(type="going_away", limit_s=5)
            assert going_away["session_id"] == session_id
        for caller, _ in callers:
            await hang_up(http, gw.base, caller)
        assert await asyncio.wait_for(gw.process.wait(), 30) == 0
    assert "Traceback" not in gw.output()


async def test_a_second_sigterm_cuts_the_drain_short(tmp_path: Path) -> None:
    async with gateway(tmp_path, workers=2, drain_s=120) as gw, aiohttp.ClientSession() as http:
        callers = [await call(http, gw.base) for _ in range(2)]
        try:
            gw.process.send_signal(signal.SIGTERM)
            for caller, _ in callers:
                await caller.wait_message(type="going_away", limit_s=5)
            await asyncio.sleep(0.5)
            assert gw.process.returncode is None  # still draining: its calls are up
            gw.process.send_signal(signal.SIGTERM)
            # Far sooner than the 120 s deadline (and than the harness's 30 s kill).
            assert await asyncio.wait_for(gw.process.wait(), 25) == 0
        finally:
            for caller, _ in callers:
                await caller.close()
    assert "hanging up 1 sessions" in gw.output()


async def test_admin_drain_needs_the_admin_key(tmp_path: Path) -> None:
    auth = ("--jwt-secret", SECRET, "--api-keys", API_KEY)
    async with gateway(tmp_path, *auth) as gw, aiohttp.ClientSession() as http:
        url = f"{gw.base}/admin/drain"
        async with http.post(url) as response:
            assert response.status == 401
        user = {"Authorization": f"Bearer {mint_token(SECRET, 'alice', session_id=None, ttl_s=60)}"}
        async with http.post(url, headers=user) as response:
            assert response.status == 403
        assert (await readyz(http, gw.base))[0] == 200
        caller, session_id = await call(http, gw.base, user)
        admin = {"Authorization": f"Bearer {API_KEY}"}
        async with http.post(url, headers=admin) as response:
            assert response.status == 202
            assert (await response.json(content_type=None))["state"] == "draining"
        assert (await readyz(http, gw.base))[1]["state"] == "draining"
        going_away = await caller.wait_message(type="going_away", limit_s=5)
        assert going_away["session_id"] == session_id
        await hang_up(http, gw.base, caller, user)
        assert await asyncio.wait_for(gw.process.wait(), 20) == 0
