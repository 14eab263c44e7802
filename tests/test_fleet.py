"""Instances that know each other through Redis, behind HAProxy.

Three `python -m gateway` instances (separate processes, their own ports, one
SQLite session store), a Redis of the test's own and Debian's HAProxy with the
shipped docs/deploy/haproxy.cfg (round robin) in front; headless aiortc callers
call through HAProxy with an API key. Pins down:
- calls spread over the instances (each answer names its process);
- `--cross-instance proxy` (the default): a `PATCH` (with `If-Match`) and a `DELETE`
  through the balancer reach the call's owner whichever instance receives them: 204
  from every instance, the owner's own 412 for a stale `If-Match`, 401 without the
  credential and 403 from a foreign `Origin` (the owner checks them; `Host` is
  passed on, so the balancer's own origin passes), the owner logs the client's address
  (X-Forwarded-For through two hops), and a DELETE hangs the caller up;
- Redis killed mid-test: new calls still work on every instance; a request that
  reaches an instance not holding its call gets `503 registry_unavailable` with
  Retry-After, the owner still answers its own; no instance crashes; each logs the
  outage once and counts it in `/stats`; Redis restarted (empty): the instances
  register again and cross-instance requests work again, for calls made before and
  during the outage;
- kill -9 of an owner: the others answer `503 owner_unavailable` for its call,
  then `404` once its registry keys lapse;
- `--cross-instance redirect`: a `201` carries the absolute URL of the call on its
  owner; a request reaching another instance gets `307` to the same path there;
  `--fleet-max-calls` refuses an offer on any instance when the fleet is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.loadtest.headless_caller import HeadlessCaller
from tests.support.gateway_process import GatewayProcess, free_port, serving
from tests.support.haproxy import Haproxy, haproxy_in_front
from tests.support.redis_server import RedisServer, redis_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

API_KEY = "fleet-test-admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SDPFRAG = {"Content-Type": "application/trickle-ice-sdpfrag"}
CANDIDATE = "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
#: The caller's own address, so the owner's log can be searched for it.
CLIENT_ADDRESS = "127.0.0.5"
#: Heartbeat (2 s) and key TTL (6 s) leave room; every wait polls up to this.
SETTLE_S = 20.0


@dataclass
class Fleet:
    instances: list[GatewayProcess]
    balancer: Haproxy
    redis: RedisServer

    def by_pid(self, pid: str) -> GatewayProcess:
        return next(i for i in self.instances if str(i.process.pid) == pid)


@contextlib.asynccontextmanager
async def fleet(tmp: Path, *extra: str) -> AsyncIterator[Fleet]:
    """Redis, three instances sharing it and one session store, HAProxy in front."""
    async with redis_server(tmp) as redis, contextlib.AsyncExitStack() as stack:
        ports = [free_port() for _ in range(3)]
        args = (
            "--workers", "1", "--agent", "gateway.agents.scripted:root_agent",
            "--session-url", f"sqlite+aiosqlite:///{tmp}/sessions.db",
            "--api-keys", API_KEY, "--redis-url", redis.url,
            "--trusted-proxies", "127.0.0.1/32", *extra,
        )  # fmt: skip
        # One after the other: the first creates the session store's tables (ADK's
        # creation races when replicas start at once on a fresh store).
        instances = [
            await stack.enter_async_context(serving(*args, port=port, log=tmp / f"gw{n}.log"))
            for n, port in enumerate(ports)
        ]
        balancer = await stack.enter_async_context(haproxy_in_front(ports))
        yield Fleet(instances, balancer, redis)


def client(**headers: str) -> aiohttp.ClientSession:
    """Keep-alive connections (HAProxy balances each request), from `CLIENT_ADDRESS`."""
    connector = aiohttp.TCPConnector(local_addr=(CLIENT_ADDRESS, 0))
    return aiohttp.ClientSession(connector=connector, headers=headers)


@dataclass
class Placed:
    caller: HeadlessCaller
    call_id: str
    owner: GatewayProcess
    location: str


async def dial(fleet: Fleet, http: aiohttp.ClientSession) -> Placed:
    caller = HeadlessCaller()
    result = await caller.dial(http, fleet.balancer.base, "?user_id=alice")
    assert result.status == 201, result.body
    assert result.location is not None
    call_id = result.location.rsplit("/", 1)[-1]
    owner = await owner_of(fleet, call_id)
    return Placed(caller, call_id, owner, result.location)


async def owner_of(fleet: Fleet, call_id: str) -> GatewayProcess:
    """The instance whose `/stats` counts the call: asked directly, `DELETE`-free:
    the instance that answers a `PATCH` sent straight to it, without forwarding."""
    for instance in fleet.instances:
        async with (
            client(**AUTH, **SDPFRAG) as http,
            http.patch(
                f"{instance.base}/calls/{call_id}",
                data=CANDIDATE,
                headers={"If-Match": "*", "X-Gateway-Forwarded-By": "test"},
            ) as response,
        ):
            if response.status == 204:
                return instance
    raise AssertionError(f"no instance holds {call_id}")


async def patch(
    http: aiohttp.ClientSession, url: str, etag: str | None, **extra: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {**SDPFRAG, **({"If-Match": etag} if etag else {}), **extra}
    async with http.patch(url, data=CANDIDATE, headers=headers, allow_redirects=False) as r:
        body = await r.json() if r.content_type == "application/problem+json" else {}
        return r.status, body, dict(r.headers)


async def stats(instance: GatewayProcess) -> dict[str, Any]:
    async with client(**AUTH) as http, http.get(f"{instance.base}/stats") as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    async with asyncio.timeout(SETTLE_S):
        while not await check():
            await asyncio.sleep(0.25)


async def test_calls_spread_and_reach_their_owner_through_the_balancer_and_survive_redis(
    tmp_path: Path,
) -> None:
    async with fleet(tmp_path) as f, client(**AUTH) as http:
        placed = [await dial(f, http) for _ in range(3)]
        try:
            # Round robin: one call on each instance.
            assert {p.owner.base for p in placed} == {i.base for i in f.instances}
            for p in placed:
                await p.caller.wait_connected()
                url = f.balancer.base + p.location
                # Three PATCHes in a row: one reaches each instance; all reach the owner.
                assert [(await patch(http, url, p.caller.etag))[0] for _ in range(3)] == [204] * 3
                stale = [await patch(http, url, '"stale"') for _ in range(3)]
                assert [status for status, *_ in stale] == [412] * 3
                assert {body["code"] for _, body, _ in stale} == {"precondition_failed"}
                async with client() as anonymous:
                    refused = [(await patch(anonymous, url, p.caller.etag))[0] for _ in range(3)]
                assert refused == [401] * 3
                # A browser page the balancer served: its Origin matches the Host the
                # owner sees (passed on); a page elsewhere is the owner's 403.
                own = [
                    (await patch(http, url, p.caller.etag, Origin=f.balancer.base))[0]
                    for _ in range(3)
                ]
                assert own == [204] * 3
                foreign = [
                    (await patch(http, url, p.caller.etag, Origin="https://evil.example"))[0]
                    for _ in range(3)
                ]
                assert foreign == [403] * 3
            proxied = [(await stats(i))["fleet"]["cross_instance_proxied"] for i in f.instances]
            assert all(count >= 8 for count in proxied), proxied
            for p in placed:  # the client's address reached the owner through two hops
                patches = re.findall(rf'{CLIENT_ADDRESS} "PATCH /calls/\S+" 204', p.owner.output())
                assert len(patches) >= 3

            await survive_redis_outage(f, http, placed)

            for p in placed:  # a hang-up through the balancer ends the call on its owner
                async with http.delete(f.balancer.base + p.location) as response:
                    assert response.status == 204
                await asyncio.wait_for(p.caller.dropped.wait(), 10)
                async with http.delete(f.balancer.base + p.location) as response:
                    assert response.status == 404

            await forget_a_dead_owner(f, http)
        finally:
            for p in placed:
                await p.caller.close()


async def forget_a_dead_owner(f: Fleet, http: aiohttp.ClientSession) -> None:
    """kill -9 of a call's owner: the others answer `503 owner_unavailable` for its
    call until its keys lapse (6 s after its last heartbeat), then `404`."""
    doomed = await dial(f, http)
    try:
        other = next(i for i in f.instances if i is not doomed.owner)
        doomed.owner.process.kill()
        await doomed.owner.process.wait()
        url = f"{other.base}/calls/{doomed.call_id}"
        status, body, headers = await patch(http, url, doomed.caller.etag)
        assert (status, body["code"]) == (503, "owner_unavailable")
        assert int(headers["Retry-After"]) > 0

        async def forgotten() -> bool:
            status, body, _ = await patch(http, url, doomed.caller.etag)
            assert status in (503, 404), body
            return status == 404 and body["code"] == "unknown_call"

        await eventually(forgotten, "the dead owner's call leaves the registry")
        assert (await stats(other))["fleet"]["owner_unavailable"] >= 1
    finally:
        await doomed.caller.close()


async def survive_redis_outage(f: Fleet, http: aiohttp.ClientSession, before: list[Placed]) -> None:
    await f.redis.stop()
    during = [await dial(f, http) for _ in range(3)]  # new calls: one on each instance
    try:
        assert {p.owner.base for p in during} == {i.base for i in f.instances}
        for p in during:
            await p.caller.wait_connected()
        url = f.balancer.base + before[0].location
        answers = [await patch(http, url, before[0].caller.etag) for _ in range(3)]
        statuses = Counter(status for status, *_ in answers)
        assert statuses == Counter({204: 1, 503: 2}), answers  # the owner answers its own
        refusals = [(body, headers) for status, body, headers in answers if status == 503]
        assert all(body["code"] == "registry_unavailable" for body, _ in refusals)
        assert all(int(headers["Retry-After"]) > 0 for _, headers in refusals)
        for instance in f.instances:
            assert instance.process.returncode is None
            assert (await instance.get("/healthz"))["status"] == "ok"

        async def all_counted() -> bool:
            readings = [await stats(i) for i in f.instances]
            return all(r["fleet"]["registry_outages"] >= 1 for r in readings)

        await eventually(all_counted, "every instance counts the outage")

        await f.redis.start()  # empty: the instances must register again

        async def cross_instance_works() -> bool:
            for p in [*before, *during]:
                target = f.balancer.base + p.location
                results = [(await patch(http, target, p.caller.etag))[0] for _ in range(3)]
                if results != [204] * 3:
                    return False
            return True

        await eventually(cross_instance_works, "cross-instance requests work again")
        for instance in f.instances:
            log = instance.output()
            assert log.count("fleet registry (Redis) unavailable") == 1, log[-3000:]
            assert "fleet registry (Redis) answers again" in log
    finally:
        for p in during:
            await p.caller.close()


async def test_redirect_mode_and_the_fleet_limit(tmp_path: Path) -> None:
    args = ("--cross-instance", "redirect", "--fleet-max-calls", "2")
    async with fleet(tmp_path, *args) as f, client(**AUTH) as http:
        placed = [await dial(f, http) for _ in range(2)]
        try:
            for p in placed:
                # The 201's Location is final (RFC 9725 §4.5): the call on its owner.
                assert p.location == f"{p.owner.base}/calls/{p.call_id}"
            relative = f"{f.balancer.base}/calls/{placed[0].call_id}"
            answers = [await patch(http, relative, placed[0].caller.etag) for _ in range(3)]
            assert Counter(status for status, *_ in answers) == Counter({204: 1, 307: 2})
            for status, _, headers in answers:
                if status == 307:
                    assert headers["Location"] == placed[0].location
            # Following the Location (with the credential) reaches the owner.
            status, *_ = await patch(http, placed[0].location, placed[0].caller.etag)
            assert status == 204

            async def fleet_full() -> bool:
                caller = HeadlessCaller()
                try:
                    result = await caller.dial(http, f.balancer.base, "?user_id=bob")
                finally:
                    await caller.close()
                assert result.status in (201, 503), result.body
                if result.status == 201:  # a heartbeat had not told this instance yet
                    async with http.delete(str(result.location)):  # absolute: its owner
                        pass
                    return False
                assert result.error_code() == "at_capacity"
                assert "every instance" in result.body  # the fleet's limit, not its own 60
                assert result.retry_after_s
                return True

            # Three refusals in a row: every instance knows the fleet is full.
            for _ in range(3):
                await eventually(fleet_full, "the fleet limit refuses offers")
            refused = [(await stats(i))["fleet"]["fleet_at_capacity"] for i in f.instances]
            assert sum(refused) >= 3

            # aiohttp follows a 307 with the same method, but drops Authorization on
            # the way to another origin (as browsers do): the owner refuses it.
            first = placed[0]
            other = next(i for i in f.instances if i is not first.owner)
            async with http.delete(f"{other.base}/calls/{first.call_id}") as followed:
                assert followed.status == 401
                assert [r.status for r in followed.history] == [307]
            async with http.delete(first.location) as response:  # the final URL
                assert response.status == 204
            await asyncio.wait_for(first.caller.dropped.wait(), 10)
        finally:
            for p in placed:
                await p.caller.close()


async def test_an_instance_with_workers_serves_its_own_calls_without_redis(
    tmp_path: Path,
) -> None:
    """Redis down: a request for a call a sibling worker holds still reaches it (the
    instance's own routing), never `registry_unavailable`."""
    args = (
        "--workers", "2", "--agent", "gateway.agents.scripted:root_agent",
        "--session-url", "memory://", "--api-keys", API_KEY,
    )  # fmt: skip
    async with (
        redis_server(tmp_path) as redis,
        serving(*args, "--redis-url", redis.url, workers=2, log=tmp_path / "gw.log") as gw,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True), headers=AUTH
        ) as http,  # a connection per request: requests land on either worker
    ):
        callers = [HeadlessCaller() for _ in range(2)]
        try:
            for caller in callers:
                assert (await caller.dial(http, gw.base, "?user_id=alice")).status == 201
                await caller.wait_connected()
            per_worker = [w["calls"] for w in (await stats(gw))["workers"]]
            assert per_worker == [1, 1]  # one call on each worker
            await redis.stop()
            for caller in callers:
                url = f"{gw.base}{caller.location}"
                # Each request lands on either worker; all reach the call's.
                assert [(await patch(http, url, caller.etag))[0] for _ in range(4)] == [204] * 4
            for caller in callers:
                async with http.delete(f"{gw.base}{caller.location}") as response:
                    assert response.status == 204
        finally:
            for caller in callers:
                await caller.close()
