"""`python -m gateway --workers N`: one gateway over several processes, as operators run it.

Pins down, with real processes and real aiortc callers over loopback (scripted agent):
- calls are spread over every worker (the answer's `X-Gateway-Worker` names the
  owner; `/stats` lists every worker with its calls), and each call is answered;
- PATCH and DELETE of a call work whichever worker receives them; unknown,
  malformed and foreign-looking call ids are 404 on every worker; the WebSocket
  transport and the web client page work on every worker;
- past `--max-calls` (over all workers) an offer gets 503 with `Retry-After` on
  every worker, the calls in progress keep their audio, and a freed slot is reused;
- SIGTERM on the supervisor stops every worker; SIGKILL on it makes the workers
  exit by themselves, removing their private sockets; a worker that dies is replaced;
- an agent that cannot load or a port in use stops start-up with a one-line reason.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import REPO_ROOT
from tests.support.gateway_process import GatewayProcess, free_port, serving
from tests.support.peers import HeadlessCaller, assert_answered

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

SCRIPTED = "gateway.agents.scripted:root_agent"
SDP = {"Content-Type": "application/sdp"}
SDPFRAG = {"Content-Type": "application/trickle-ice-sdpfrag"}


def alive(pid: int) -> bool:
    """A process that has not exited (a zombie waiting for its reaper has)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def worker_pids(gateway: GatewayProcess) -> set[int]:
    return {w["pid"] for w in (await gateway.get("/stats"))["workers"]}


@contextlib.asynccontextmanager
async def run_gateway(
    tmp_path: Path, *args: str, workers: int = 2
) -> AsyncIterator[GatewayProcess]:
    """`python -m gateway` with the scripted agent on a free port, until all workers serve."""
    port = free_port()
    async with serving(
        "--agent", SCRIPTED, "--session-url", "memory://", "--workers", str(workers), *args,
        log=tmp_path / f"gateway-{port}.log", workers=workers, port=port,
    ) as gateway:  # fmt: skip
        yield gateway


@contextlib.asynccontextmanager
async def via_worker(base: str, pid: int, *, other: bool = False) -> AsyncIterator[Any]:
    """An HTTP session whose one keep-alive connection was accepted by worker `pid`
    (or by any other worker with `other`): reconnect until the kernel hands it there."""
    for _ in range(200):
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        async with http.get(f"{base}/stats") as response:
            answered_by = (await response.json())["pid"]
        if (answered_by != pid) if other else (answered_by == pid):
            try:
                yield http
            finally:
                await http.close()
            return
        await http.close()
    raise AssertionError(f"no connection reached {'a worker other than ' if other else ''}{pid}")


async def place_call(
    http: aiohttp.ClientSession, base: str, caller: HeadlessCaller
) -> tuple[str, int]:
    """POST the caller's offer; its Location and the pid of the worker that owns it."""
    async with http.post(f"{base}/calls", data=await caller.offer(), headers=SDP) as response:
        assert response.status == 201, await response.text()
        await caller.accept(await response.text())
        caller.etag = response.headers["ETag"]
        return response.headers["Location"], int(response.headers["X-Gateway-Worker"])


def call_id(worker: int) -> str:
    """A well-formed call id of worker `worker` that no call has."""
    return base64.urlsafe_b64encode(worker.to_bytes(2, "big") + secrets.token_bytes(16)).decode()


async def close_all(callers: list[HeadlessCaller]) -> None:
    await asyncio.gather(*(c.close() for c in callers))


async def test_calls_spread_over_workers_and_any_worker_routes_them(tmp_path: Path) -> None:
    async with run_gateway(tmp_path) as gateway, aiohttp.ClientSession() as http:
        pids = await worker_pids(gateway)
        assert len(pids) == 2
        callers = [HeadlessCaller() for _ in range(8)]
        try:
            placed = await asyncio.gather(*(place_call(http, gateway.base, c) for c in callers))
            owners = Counter(pid for _, pid in placed)
            assert set(owners) == pids
            assert min(owners.values()) >= 3  # placed by load, not piled on one worker
            stats = await gateway.get("/stats")
            assert {w["pid"]: w["calls"] for w in stats["workers"]} == owners
            assert all(w["cpu_s"] > 0 and w["rss_bytes"] > 10 * 2**20 for w in stats["workers"])
            assert (await gateway.get("/healthz"))["calls"] == 8
            await asyncio.gather(*(c.wait_connected(20) for c in callers))
            await asyncio.gather(*(assert_answered(c) for c in callers))

            frag = "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
            for (location, owner), caller in zip(placed, callers, strict=True):
                async with via_worker(gateway.base, owner, other=True) as elsewhere:
                    # The owner checks If-Match, forwarded from the worker that got it.
                    stale = {**SDPFRAG, "If-Match": '"another-ice-session"'}
                    async with elsewhere.patch(gateway.base + location, data=frag,
                                               headers=stale) as response:  # fmt: skip
                        assert response.status == 412, await response.text()
                    trickle = {**SDPFRAG, "If-Match": caller.etag or ""}
                    async with elsewhere.patch(gateway.base + location, data=frag,
                                               headers=trickle) as response:  # fmt: skip
                        assert response.status == 204, await response.text()
                    async with elsewhere.delete(gateway.base + location) as response:
                        assert response.status == 204, await response.text()
                    async with elsewhere.delete(gateway.base + location) as response:
                        assert response.status == 404
            assert (await gateway.get("/healthz"))["calls"] == 0
        finally:
            await close_all(callers)

        for pid in pids:
            async with via_worker(gateway.base, pid) as on_worker:
                for unknown in ["nope", call_id(0), call_id(1), call_id(7), call_id(0)[:-1]]:
                    async with on_worker.delete(f"{gateway.base}/calls/{unknown}") as response:
                        assert response.status == 404, unknown
                    any_session = {**SDPFRAG, "If-Match": "*"}
                    async with on_worker.patch(f"{gateway.base}/calls/{unknown}", data=frag,
                                               headers=any_session) as response:  # fmt: skip
                        assert response.status == 404, unknown
                # The WebSocket transport and the web client work on every worker too.
                async with on_worker.ws_connect(
                    f"{gateway.base}/ws/u1?is_audio=true&events=1"
                ) as ws:
                    assert (await ws.receive_json(timeout=20))["type"] == "session"
                async with on_worker.get(f"{gateway.base}/") as response:
                    assert response.status == 200
                    assert "<html" in (await response.text()).lower()


async def test_full_gateway_refuses_and_keeps_its_calls(tmp_path: Path) -> None:
    async with run_gateway(tmp_path, "--max-calls", "2") as gateway, aiohttp.ClientSession() as h:
        pids = await worker_pids(gateway)
        callers = [HeadlessCaller() for _ in range(3)]
        try:
            placed = [await place_call(h, gateway.base, c) for c in callers[:2]]
            assert {pid for _, pid in placed} == pids  # one call per worker's share
            await asyncio.gather(*(c.wait_connected(20) for c in callers[:2]))
            offer = await callers[2].offer()
            for pid in pids:  # whichever worker receives it
                async with via_worker(gateway.base, pid) as on_worker:
                    response = await on_worker.post(f"{gateway.base}/calls", data=offer,
                                                    headers=SDP)  # fmt: skip
                    assert response.status == 503
                    assert int(response.headers["Retry-After"]) > 0
                    assert (await response.json())["error"]["code"] == "at_capacity"
            # The calls in progress are untouched: ~50 frames a second, and answered.
            counts = [len(c.frames) for c in callers[:2]]
            await asyncio.sleep(1.0)
            assert all(len(c.frames) - n >= 40 for c, n in zip(callers[:2], counts, strict=True))
            await asyncio.gather(*(assert_answered(c) for c in callers[:2]))

            async with h.delete(gateway.base + placed[0][0]) as response:
                assert response.status == 204
            async with h.post(f"{gateway.base}/calls", data=offer, headers=SDP) as response:
                assert response.status == 201  # the freed slot takes a new call
                assert int(response.headers["X-Gateway-Worker"]) == placed[0][1]
        finally:
            await close_all(callers)


async def test_sigterm_stops_every_worker(tmp_path: Path) -> None:
    async with run_gateway(tmp_path) as gateway, aiohttp.ClientSession() as http:
        pids = await worker_pids(gateway)
        caller = HeadlessCaller()
        try:
            await place_call(http, gateway.base, caller)
            await caller.wait_connected(20)
            gateway.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(gateway.process.wait(), 30) == 0
        finally:
            await caller.close()
    assert not [pid for pid in pids if alive(pid)]
    assert "Traceback" not in gateway.output()


def unix_socket_paths(pid: int) -> set[Path]:
    """The paths of the unix sockets process `pid` has open."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    with open("/proc/net/unix", encoding="ascii") as table:
        rows = [line.split() for line in table.read().splitlines()[1:]]
    return {Path(row[7]) for row in rows if len(row) > 7 and row[6] in inodes}


async def test_workers_exit_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    async with run_gateway(tmp_path) as gateway:
        pids = await worker_pids(gateway)
        private_dirs = {path.parent for pid in pids for path in unix_socket_paths(pid)}
        assert len(private_dirs) == 1
        gateway.process.kill()
        await gateway.process.wait()
        async with asyncio.timeout(10):
            while any(alive(pid) for pid in pids):
                await asyncio.sleep(0.1)
        assert not any(d.exists() for d in private_dirs)  # the workers cleaned up


async def test_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    async with run_gateway(tmp_path) as gateway:
        pids = await worker_pids(gateway)
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        async with asyncio.timeout(30):
            while True:
                now = await worker_pids(gateway)
                if len(now) == 2 and victim not in now:
                    break
                await asyncio.sleep(0.2)
        assert (await gateway.get("/healthz"))["workers"] == 2
        assert f"(pid {victim}) exited with status -9; restarting" in gateway.output()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--agent", "no_such_module:agent"], "cannot load agent 'no_such_module:agent'"),
        (["--port", "{taken}"], "cannot listen on 127.0.0.1:{taken}"),
    ],
)
async def test_start_up_errors_stop_with_one_line(args: list[str], reason: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "--workers", "2", "--host", "127.0.0.1",
            "--port", str(free_port()), "--session-url", "memory://",
            *(a.format(taken=port) for a in args),
            cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        async with asyncio.timeout(60):
            output = (await process.communicate())[0].decode()
    assert process.returncode not in (0, None)
    last = output.strip().splitlines()[-1]
    assert last.startswith("adk-webrtc-gateway: " + reason.format(taken=port)), output
    assert "Traceback" not in output
