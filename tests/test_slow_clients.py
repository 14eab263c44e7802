"""Slow, idle and too many clients, against the public HTTP server over real sockets.

Pins down, with raw loopback sockets against `gateway.http_server` (in this process,
or `python -m gateway` where the command line, the fd limit or the workers matter):
- a connection that sends nothing, or dribbles its head a byte a second, is cut
  `header_timeout_s` after it opened; on a keep-alive connection the head is timed
  from its first byte, and a connection with no request is cut after `idle_timeout_s`;
- a body dribbled a byte at a time gets `408` at `body_timeout_s` and the connection
  closes within the linger that follows;
- an upgraded WebSocket outlives every one of these timeouts and every shedding;
- past `max_connections` of requests in progress a new connection gets `503` with
  `Retry-After` and is closed at once; idle, dribbling-head and dribbling-body
  connections beyond `max_idle_connections` are closed longest-idle first, so
  `/healthz` keeps answering, with nothing logged at ERROR;
- requests aiohttp cannot parse are answered 400 and logged as one line per interval,
  not a traceback each;
- under RLIMIT_NOFILE 256, a thousand idle connections leave `/healthz` up (the caps
  keep accept() from running out), and when caps set too high let it run out the
  log says so in one line per interval, not a traceback per attempt;
- `python -m gateway --workers 2` serves through the same guard;
- the access log has no query strings (session ids, tokens), Authorization or user ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from gateway.app import create_app
from gateway.cluster.supervisor import listen
from gateway.http_server import LINGER_S, HttpLimits, PublicServer
from tests.conftest import gateway_settings
from tests.support.fakes import FakeAgentConnector
from tests.support.gateway_process import GatewayProcess, serving
from tests.support.peers import HeadlessCaller
from tests.support.raw_http import (
    Client,
    clients,
    close_flood,
    cut_while_sending,
    healthz_s,
    open_flood,
)

pytestmark = pytest.mark.timeout(60)

SCRIPTED = "gateway.agents.scripted:root_agent"
#: How late a cut may come: scheduling on a loaded 2-core machine.
MARGIN_S = 0.6
#: How early it may seem: the server's clock starts when it accepts, which can be a
#: few milliseconds before the client's `open_connection` returns (measured: 1 ms).
EARLY_S = 0.05
HEAD = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nUser-Agent: slow-test\r\n\r\n"


def cut_at(lasted: float, limit_s: float) -> bool:
    """Whether a connection that lasted `lasted` was cut at `limit_s`."""
    return limit_s - EARLY_S <= lasted < limit_s + MARGIN_S


@dataclass
class Served:
    port: int
    server: PublicServer

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def guarded(**overrides: object) -> AsyncIterator[Served]:
    """The gateway app (fake agent) through `PublicServer` on a loopback port."""
    settings = gateway_settings(**overrides)
    app = create_app(settings, FakeAgentConnector(echo_text=True))
    server = PublicServer(app, HttpLimits.from_settings(settings, settings.max_calls))
    sockets = listen("127.0.0.1", 0)
    try:
        await server.setup()
        await server.start(sockets)
        yield Served(sockets[0].getsockname()[1], server)
    finally:
        await server.cleanup()
        for sock in sockets:
            sock.close()


async def test_a_silent_connection_is_cut_at_the_header_timeout() -> None:
    async with guarded(header_timeout_s=1.0, idle_timeout_s=5.0) as served:
        client = await Client.open(served.port)
        lasted = await client.closed_at()
        await client.close()
    assert cut_at(lasted, 1.0), lasted
    assert served.server.guard.counts.slow_heads == 1


async def test_a_head_dribbled_a_byte_a_second_is_cut_at_the_header_timeout() -> None:
    async with guarded(header_timeout_s=2.0, idle_timeout_s=10.0) as served:
        client = await Client.open(served.port)
        lasted = await cut_while_sending(client, HEAD, every_s=1.0)
        await client.close()
    assert cut_at(lasted, 2.0), lasted
    assert client.received == b""  # nothing answered: the head never completed


async def test_keep_alive_heads_are_timed_from_their_first_byte() -> None:
    async with guarded(header_timeout_s=1.0, idle_timeout_s=5.0) as served:
        client = await Client.open(served.port)
        await client.send(HEAD)
        assert (await client.response_head()).startswith(b"HTTP/1.1 200")
        await asyncio.sleep(1.5)  # past the head timeout, within the idle timeout
        assert client.is_open()
        started = time.monotonic()
        await cut_while_sending(client, HEAD, every_s=0.2)
        await client.close()
    assert cut_at(time.monotonic() - started, 1.0)


async def test_a_keep_alive_connection_with_no_request_is_cut_at_the_idle_timeout() -> None:
    async with guarded(header_timeout_s=1.0, idle_timeout_s=2.0) as served:
        client = await Client.open(served.port)
        await client.send(HEAD)
        await client.response_head()
        answered_at = time.monotonic() - client.opened_at
        lasted = await client.closed_at() - answered_at
        await client.close()
    assert cut_at(lasted, 2.0), lasted


async def test_a_dribbled_body_gets_408_and_is_cut_after_the_linger() -> None:
    head = (
        b"POST /calls HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/sdp\r\n"
        b"Content-Length: 2000\r\n\r\n"
    )
    async with guarded(body_timeout_s=1.0, header_timeout_s=5.0) as served:
        client = await Client.open(served.port)
        await client.send(head)
        lasted = await cut_while_sending(client, b"v=0\r\n" * 400, every_s=0.25)
        await client.close()
    assert client.received.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b'"code": "request_timeout"' in client.received
    assert 1.0 - EARLY_S <= lasted < 1.0 + LINGER_S + MARGIN_S, lasted


async def test_a_websocket_outlives_every_timeout_and_shedding() -> None:
    async with (
        guarded(
            header_timeout_s=1.0, body_timeout_s=1.0, idle_timeout_s=1.0,
            max_connections=10, max_idle_connections=3,
        ) as served,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{served.base}/ws/u1?is_audio=false") as ws,
    ):  # fmt: skip
        async with clients(served.port, 20):  # silent ones, shed as they come
            await asyncio.sleep(3.5)
        await ws.send_json({"mime_type": "text/plain", "data": "still there?"})
        answer = await ws.receive_json(timeout=5)
    assert answer["mime_type"] == "text/plain"
    assert served.server.guard.counts.evicted >= 17


async def test_past_the_cap_a_new_connection_gets_503_and_is_closed() -> None:
    async with (
        guarded(max_connections=3) as served,
        aiohttp.ClientSession() as http,
    ):
        sockets = [await http.ws_connect(f"{served.base}/ws/u{i}?is_audio=false") for i in range(3)]
        try:
            client = await Client.open(served.port)
            lasted = await client.closed_at()
            await client.close()
            assert lasted < 0.5
            assert client.received.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert b"Retry-After: 1\r\n" in client.received
            assert b'"code": "at_capacity"' in client.received
            assert served.server.guard.counts.refused == 1
            await sockets.pop().close()
            async with asyncio.timeout(5):
                while served.server.guard.open_connections >= 3:
                    await asyncio.sleep(0.05)
            await healthz_s(served.base)  # a freed place serves again
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))


async def test_healthz_answers_while_slow_clients_fill_the_caps(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    body_head = (
        b"POST /offer HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000\r\n\r\n{"
    )
    limits = {"header_timeout_s": 10.0, "body_timeout_s": 10.0, "idle_timeout_s": 10.0}
    async with guarded(**limits, max_connections=30, max_idle_connections=10) as served:
        guard = served.server.guard
        async with clients(served.port, 60) as slow:
            for i, client in enumerate(slow):  # silent, dribbling a head, dribbling a body
                if i % 3 == 1:
                    await client.send(HEAD[:20])
                elif i % 3 == 2:
                    await client.send(body_head)
                await asyncio.sleep(0.01)
                assert guard.open_connections <= 30
            await asyncio.sleep(0.2)
            probes = [await healthz_s(served.base) for _ in range(5)]
            still_open = sum(c.is_open() for c in slow)
    assert max(probes) < 0.5, probes
    assert guard.counts.evicted >= 45
    assert still_open <= 10
    assert guard.counts.refused == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_malformed_requests_are_one_log_line_not_a_traceback_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with guarded() as served:
        for _ in range(20):
            client = await Client.open(served.port)
            await client.send(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            assert (await client.response_head()).startswith(b"HTTP/1.0 400")
            await client.close()
    server_lines = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(server_lines) <= 1  # one per interval, and a test before may have had it
    assert not [r for r in server_lines if r.exc_info]
    assert len([r for r in caplog.records if r.name == "aiohttp.access"]) == 20


@pytest.mark.slow
async def test_a_thousand_idle_connections_under_256_descriptors_leave_healthz_up(
    tmp_path: Path,
) -> None:
    log = tmp_path / "gateway.log"
    async with serving(
        "--agent", SCRIPTED, "--session-url", "memory://", "--workers", "1",
        "--header-timeout-s", "5", log=log, open_files=256,
    ) as gateway:  # fmt: skip
        before = log.stat().st_size
        started = time.monotonic()
        flood = await open_flood(int(gateway.base.rsplit(":", 1)[1]), 1000)
        try:
            flooded_s = time.monotonic() - started
            probes = [await healthz_s(gateway.base) for _ in range(5)]
            fds = len(os.listdir(f"/proc/{gateway.process.pid}/fd"))
        finally:
            close_flood(flood)
        logged = log.stat().st_size - before
    output = gateway.output()
    print(f"flood {flooded_s:.2f} s, /healthz {max(probes) * 1000:.0f} ms max, "
          f"{fds} fds open, {logged} log bytes")  # fmt: skip
    assert "up to 128 connections, 64 of them idle (RLIMIT_NOFILE 256)" in output
    assert max(probes) < 1.0, probes
    assert fds < 256
    assert "Too many open files" not in output
    assert "Traceback" not in output
    assert logged < 2000  # five access log lines


@pytest.mark.slow
async def test_out_of_descriptors_is_logged_once_not_per_accept(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    async with serving(
        "--agent", SCRIPTED, "--session-url", "memory://", "--workers", "1",
        "--max-connections", "5000", "--max-idle-connections", "5000",
        "--header-timeout-s", "2", log=log, open_files=256,
    ) as gateway:  # fmt: skip
        before = log.stat().st_size
        flood = await open_flood(int(gateway.base.rsplit(":", 1)[1]), 1000)
        try:
            started = time.monotonic()
            async with asyncio.timeout(15):
                while True:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError, AssertionError):
                        await healthz_s(gateway.base)
                        break
                    await asyncio.sleep(0.2)
            recovered_s = time.monotonic() - started
            await asyncio.sleep(1.0)
        finally:
            close_flood(flood)
        logged = log.stat().st_size - before
    output = gateway.output()
    failures = output.count("accept() failed: Too many open files")
    print(f"/healthz back after {recovered_s:.1f} s; {failures} accept lines, "
          f"{logged} log bytes")  # fmt: skip
    assert "max_connections 5000 is more than RLIMIT_NOFILE 256 leaves" in output
    assert failures == 1
    assert "Traceback" not in output
    assert logged < 4000


@pytest.mark.slow
async def test_workers_serve_through_the_same_guard(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    async with serving(
        "--agent", SCRIPTED, "--session-url", "memory://", "--workers", "2",
        "--header-timeout-s", "1", "--max-idle-connections", "5",
        log=log, workers=2,
    ) as gateway:  # fmt: skip
        port = int(gateway.base.rsplit(":", 1)[1])
        silent, dribbler = await Client.open(port), await Client.open(port)
        lasted = await asyncio.gather(
            silent.closed_at(), cut_while_sending(dribbler, HEAD, every_s=0.3)
        )
        await asyncio.gather(silent.close(), dribbler.close())
        async with clients(port, 30):
            await asyncio.sleep(0.3)
            await healthz_s(gateway.base)
    assert all(cut_at(t, 1.0) for t in lasted), lasted
    assert gateway.output().count("http: up to") == 2


@pytest.mark.slow
async def test_the_access_log_has_no_query_strings_or_credentials(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    token = "tok-5ecret-value"
    store = f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"
    first, second = HeadlessCaller(), HeadlessCaller()
    try:
        async with (
            serving("--agent", SCRIPTED, "--session-url", store, "--workers", "2",
                    log=log, workers=2) as gateway,
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        ):  # fmt: skip
            session_id = await _call_and_hang_up(http, gateway, first, "?user_id=alice-77")
            query = f"?session_id={session_id}&token={token}&user_id=alice-77"
            assert await _call_and_hang_up(http, gateway, second, query) == session_id
            async with http.ws_connect(
                f"{gateway.base}/ws/alice-77?is_audio=false&session_id={session_id}"
            ) as ws:
                await ws.send_json({"mime_type": "text/plain", "data": "hello"})
                await ws.receive_json(timeout=10)
    finally:
        await asyncio.gather(first.close(), second.close())
    output = gateway.output()
    access = [line for line in output.splitlines() if "aiohttp.access" in line]
    assert any('"POST /calls" 201' in line for line in access), access
    assert any('"GET /ws/{user_id}" 101' in line for line in access), access
    assert any(re.search(r'"DELETE /calls/[\w-]+" 204', line) for line in access), access
    for secret in (session_id, token, "alice-77", "Bearer", "session_id=", "?"):
        assert not [line for line in access if secret in line], secret
    assert session_id not in output
    assert token not in output


async def _call_and_hang_up(
    http: aiohttp.ClientSession, gateway: GatewayProcess, caller: HeadlessCaller, query: str
) -> str:
    """A call placed with `query`, connected, then hung up; its session id."""
    async with http.post(
        f"{gateway.base}/calls{query}",
        data=await caller.offer(),
        headers={"Content-Type": "application/sdp"},
    ) as response:
        assert response.status == 201, await response.text()
        await caller.accept(await response.text())
        location, session_id = response.headers["Location"], response.headers["X-Session-Id"]
    await caller.wait_connected(20)
    async with http.delete(f"{gateway.base}{location}") as response:
        assert response.status == 204
    return session_id
