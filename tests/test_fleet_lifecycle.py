"""A fleet losing instances without losing conversations (issue 14's acceptance run).

Three `python -m gateway` instances (own ports, `--workers 1`, scripted agent) share
a fresh PostgreSQL database and a Redis of the test's own; Debian's HAProxy with the
shipped docs/deploy/haproxy.cfg (readiness checks on `/readyz`) is in front. Headless
aiortc callers call through HAProxy and behave as the browser client does:
- on `going_away` they re-offer through the balancer with their session id (retrying
  a `503 draining` after its Retry-After) and hang the old call up once the new one
  is connected;
- when the gateway's RTP stops for 2 s they re-offer the same way.
Pins down:
- SIGTERM on one instance: its callers move to the other instances, every typed turn
  before and after the move is answered, nobody gets an `error`, the drained instance
  exits 0; the conversation's turns from both calls are stored in PostgreSQL;
- kill -9 of another instance: its callers notice within a few seconds, are back on
  the last instance with their session, and their next turn is answered and stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from gateway.adk.sessions import build_session_service, close_session_service
from gateway.loadtest.headless_caller import HeadlessCaller
from tests.support.gateway_process import GatewayProcess, free_port, serving
from tests.support.haproxy import haproxy_in_front
from tests.support.postgres import fresh_database, pg_url
from tests.support.redis_server import redis_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

APP = "adk-webrtc-gateway"
TURN_TIMEOUT_S = 15.0
MOVE_TIMEOUT_S = 20.0


@dataclass
class Conversation:
    """One user's conversation, on whichever call currently carries it."""

    user: str
    base: str
    caller: HeadlessCaller = field(default_factory=HeadlessCaller)
    session_id: str = ""
    pid: int = 0
    calls: int = 0
    said: list[str] = field(default_factory=list)
    errors: list[dict[str, object]] = field(default_factory=list)

    async def dial(self, http: aiohttp.ClientSession) -> None:
        """A new call for this conversation (continuing it once it has a session)."""
        query = f"?user_id={self.user}" + (f"&session_id={self.session_id}" if self.calls else "")
        deadline = time.monotonic() + MOVE_TIMEOUT_S
        while True:
            caller = HeadlessCaller()
            dialled = await caller.dial(http, self.base, query)
            if dialled.status == 201:
                break
            await caller.close()
            # Draining or a dead instance behind the balancer: as the client, retry.
            assert dialled.status == 503, dialled.body
            assert time.monotonic() < deadline, "no instance took the re-offer"
            await asyncio.sleep(dialled.retry_after_s or 1.0)
        await caller.wait_connected(20)
        session = await caller.wait_message(type="session", limit_s=20)
        assert not self.calls or session["session_id"] == self.session_id
        old, self.caller = self.caller, caller
        self.session_id = session["session_id"]
        assert dialled.worker_pid is not None
        self.pid = dialled.worker_pid
        self.calls += 1
        self.errors.extend(m for m in old.messages if m.get("type") == "error")
        await old.close()  # after the new call connected: the client's order

    async def say(self, text: str) -> None:
        await self.caller.wait_channel_open()
        self.caller.send({"type": "text", "text": text})
        await self.caller.wait_message(
            limit_s=TURN_TIMEOUT_S, type="transcript", role="agent", text=f"You said: {text}"
        )
        self.said.append(text)

    def all_errors(self) -> list[dict[str, object]]:
        return self.errors + [m for m in self.caller.messages if m.get("type") == "error"]


@contextlib.asynccontextmanager
async def fleet(tmp: Path) -> AsyncIterator[tuple[list[GatewayProcess], str, str]]:
    async with (
        fresh_database("gw_fleet") as database,
        redis_server(tmp) as redis,
        contextlib.AsyncExitStack() as stack,
    ):
        store = pg_url(database)
        args = (
            "--workers", "1", "--agent", "gateway.agents.scripted:root_agent",
            "--session-url", store, "--redis-url", redis.url,
            "--trusted-proxies", "127.0.0.1/32", "--drain-timeout", "20",
        )  # fmt: skip
        ports = [free_port() for _ in range(3)]
        instances = [
            await stack.enter_async_context(serving(*args, port=port, log=tmp / f"gw{n}.log"))
            for n, port in enumerate(ports)
        ]
        balancer = await stack.enter_async_context(haproxy_in_front(ports))
        yield instances, balancer.base, store


async def stored_turns(store: str, conversation: Conversation) -> list[str]:
    service = build_session_service(store)
    try:
        found = await service.get_session(
            app_name=APP, user_id=conversation.user, session_id=conversation.session_id
        )
    finally:
        await close_session_service(service)
    assert found is not None
    return [
        part.text
        for event in found.events
        if event.author == "user" and event.content
        for part in event.content.parts or []
        if part.text
    ]


async def test_drain_and_crash_keep_every_conversation(tmp_path: Path) -> None:
    async with fleet(tmp_path) as (instances, base, store), aiohttp.ClientSession() as http:
        talks = [Conversation(f"user{n}", base) for n in range(3)]
        try:
            for talk in talks:
                await talk.dial(http)
                await talk.say(f"{talk.user} one")
            by_pid = {instance.process.pid: instance for instance in instances}
            assert {t.pid for t in talks} == set(by_pid), "round robin: one call each"

            # Drain: SIGTERM the first caller's instance; it moves on going_away.
            drained = by_pid[talks[0].pid]
            drained.process.send_signal(signal.SIGTERM)
            going = await talks[0].caller.wait_message(type="going_away", limit_s=5)
            assert going["session_id"] == talks[0].session_id
            await talks[0].dial(http)
            assert talks[0].pid != drained.process.pid
            await talks[0].say(f"{talks[0].user} two")
            assert await asyncio.wait_for(drained.process.wait(), 30) == 0

            # Crash: kill -9 the second caller's instance; it notices the silence.
            crashed = by_pid[talks[1].pid]
            os.kill(crashed.process.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            await asyncio.wait_for(talks[1].caller.wait_media_lost(), 10)
            noticed_s = time.monotonic() - killed_at
            await talks[1].dial(http)
            back_s = time.monotonic() - killed_at
            await talks[1].say(f"{talks[1].user} two")
            survivor = next(i for i in instances if i not in (drained, crashed))
            assert talks[1].pid == survivor.process.pid
            print(f"\nkill -9: silence noticed after {noticed_s:.1f} s, back in {back_s:.1f} s")
            assert noticed_s < 5.0

            await talks[2].say(f"{talks[2].user} two")  # the untouched one goes on too
            for talk in talks:
                assert talk.all_errors() == [], (talk.user, talk.all_errors())
                assert await stored_turns(store, talk) == talk.said, talk.user
        finally:
            await asyncio.gather(*(t.caller.close() for t in talks))
