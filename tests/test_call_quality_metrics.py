"""Per-call quality in `/metrics`: reply latency, barge-in to silence, loss, jitter, RTT.

An in-process gateway (fake agent at our seam) and a real aiortc caller over
loopback; `/metrics` read with prometheus-client's parser. Pins down:
- a final user transcript followed by agent audio adds one observation to
  `gateway_agent_reply_latency_seconds` (small: the fake answers at once), and a typed
  turn answered by text another;
- `interrupted` during a reply adds one `gateway_barge_in_silence_seconds`
  observation within a frame or two (the next 20 ms packet carries no cut reply);
- at hang-up the call's packet loss (0 on loopback) and jitter are observed for both
  directions (the downlink from the caller's RTCP receiver reports) and its RTT once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gateway.agent_api import AgentAudio, AgentInterrupted, AgentText, Transcript
from tests.support.fakes import FakeAgentConnector, agent_tone
from tests.support.peers import live_call

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: Any) -> Samples:
    response = await client.get("/metrics")
    assert response.status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(await response.text())
        for sample in family.samples
    }


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_reply_latency_barge_in_and_link_quality(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector()
    client = await start_gateway(connector)
    before = await scrape(client)
    async with live_call(client) as (caller, location):
        await caller.wait_message(type="session")
        agent = connector.last
        agent.emit(Transcript("user", "what time is it", True))
        agent.emit(AgentAudio(agent_tone(2.0)))
        async with asyncio.timeout(5):  # the reply is playing
            while not any(f.rms > 1000 for f in caller.frames):
                await asyncio.sleep(0.02)
        agent.emit(AgentInterrupted())
        await caller.wait_message(type="interrupted")
        agent.emit(AgentText("typed answer", True))  # no typed turn yet: not a reply
        caller.send({"type": "text", "text": "hello"})
        async with asyncio.timeout(5):
            while "hello" not in agent.texts:
                await asyncio.sleep(0.02)
        agent.emit(AgentText("hi there", True))
        await caller.wait_message(type="text", text="hi there")
        await asyncio.sleep(3.0)  # RTCP reports both ways (aiortc: every 0.5-1.5 s)
        assert (await client.delete(location)).status == 204
    after = await scrape(client)

    assert grew(before, after, "gateway_agent_reply_latency_seconds_count") == 2
    assert 0 <= grew(before, after, "gateway_agent_reply_latency_seconds_sum") < 1.0
    assert grew(before, after, "gateway_barge_in_silence_seconds_count") == 1
    assert 0 <= grew(before, after, "gateway_barge_in_silence_seconds_sum") <= 0.1
    for direction in ("uplink", "downlink"):
        loss = "gateway_call_packet_loss_ratio"
        assert grew(before, after, f"{loss}_count", direction=direction) == 1, direction
        assert grew(before, after, f"{loss}_sum", direction=direction) == 0, direction
        jitter = "gateway_call_jitter_seconds"
        assert grew(before, after, f"{jitter}_count", direction=direction) == 1, direction
        assert 0 <= grew(before, after, f"{jitter}_sum", direction=direction) < 0.1
    assert grew(before, after, "gateway_call_rtt_seconds_count") == 1
    assert 0 <= grew(before, after, "gateway_call_rtt_seconds_sum") < 0.5
