"""A caller whose network changed re-offers with its session id: the conversation
continues on the new call and the old call ends (aiortc cannot restart ICE, so this
is how a call moves; docs/protocol.md, "Moving a call instead of an ICE restart").

Pins down, with real aiortc callers over loopback:
- the new call continues the same session; the old caller is told (`error`, code
  `moved`, fatal) and its call is gone (DELETE 404, `/healthz` counts one call);
- only the same user's calls of that session move: another user's call stays;
- a re-offer with no session id, or another session's, ends nothing;
- with two worker processes the old call ends whichever worker owns it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.fakes import FakeAgentConnector
from tests.support.gateway_process import free_port, serving
from tests.support.peers import HeadlessCaller, live_call, tone_pcm


async def calls_on(client: Any) -> int:
    calls: int = (await (await client.get("/healthz")).json())["calls"]
    return calls


async def test_a_re_offer_moves_the_conversation(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector()
    client = await start_gateway(connector)
    async with live_call(client, query="?user_id=alice") as (first, first_location):
        session_id = (await first.wait_message(type="session"))["session_id"]
        async with live_call(client, query=f"?user_id=alice&session_id={session_id}") as (
            second,
            second_location,
        ):
            moved = await first.wait_message(type="error", code="moved")
            assert moved["fatal"] is True
            resumed = await second.wait_message(type="session")
            assert resumed["session_id"] == session_id
            async with asyncio.timeout(5):
                while await calls_on(client) != 1:
                    await asyncio.sleep(0.05)
            assert (await client.delete(first_location)).status == 404
            # The new call is the live one: its audio reaches the agent.
            second.mic.play_pcm(tone_pcm(0.5))
            async with asyncio.timeout(5):
                while len(connector.last.audio) < 8000:
                    await asyncio.sleep(0.05)
            assert connector.last.session_id == session_id
            assert (await client.delete(second_location)).status == 204


async def test_only_the_same_users_same_session_moves(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector(known_sessions={"shared-1"})
    client = await start_gateway(connector)
    async with (
        live_call(client, query="?user_id=alice&session_id=shared-1") as (alice, _),
        live_call(client, query="?user_id=alice") as (alice_other, _),
    ):
        await alice.wait_message(type="session")
        await alice_other.wait_message(type="session")
        async with (
            live_call(client, query="?user_id=bob&session_id=shared-1") as (bob, _),
            live_call(client, query="?user_id=alice") as (alice_new, _),
        ):
            await bob.wait_message(type="session")
            await alice_new.wait_message(type="session")
            await asyncio.sleep(1.0)  # a move would have been announced by now
            assert await calls_on(client) == 4
            for caller in (alice, alice_other, bob, alice_new):
                assert not [m for m in caller.messages if m.get("code") == "moved"]


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_re_offer_moves_a_call_owned_by_another_worker(tmp_path: Path) -> None:
    port = free_port()
    async with (
        serving(
            # Sessions in one store for both workers (memory:// is per process).
            "--agent",
            "gateway.agents.scripted:root_agent",
            "--session-url",
            f"sqlite+aiosqlite:///{tmp_path}/sessions.db",
            "--workers",
            "2",
            log=tmp_path / "gateway.log",
            workers=2,
            port=port,
        ) as gateway,  # fmt: skip
        aiohttp.ClientSession() as http,
    ):
        first, second = HeadlessCaller(), HeadlessCaller()
        try:
            dialled = await first.dial(http, gateway.base, "?user_id=alice")
            assert dialled.status == 201, dialled.body
            session_id = dialled.session_id
            await first.wait_connected()
            # The least-loaded worker takes the re-offer: the other one.
            redialled = await second.dial(
                http, gateway.base, f"?user_id=alice&session_id={session_id}"
            )
            assert redialled.status == 201, redialled.body
            assert redialled.session_id == session_id
            assert redialled.worker_pid != dialled.worker_pid
            await second.wait_connected()
            moved = await first.wait_message(type="error", code="moved", limit_s=10)
            assert moved["fatal"] is True
            async with asyncio.timeout(10):
                while (await gateway.get("/healthz"))["calls"] != 1:
                    await asyncio.sleep(0.1)
            assert not [m for m in second.messages if m.get("code") == "moved"]
        finally:
            await asyncio.gather(first.close(), second.close())
