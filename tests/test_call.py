"""A real aiortc caller calls the in-process gateway over loopback (fake agent).

Pins down:
- POST /calls answers 201 with SDP and an unguessable Location; media connects;
- the caller's audio reaches the agent as 16 kHz PCM in 40 ms chunks;
- agent audio reaches the caller at its energy, at 50 frames/s, silence otherwise;
- data channel: `session` first, text round trip, bad messages get `error`;
- `interrupted` flushes the agent's queued audio;
- DELETE ends the call and releases everything; a fatal agent error ends it too;
- a caller with no data channel still gets a working voice call; text mode.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from gateway.agent_api import AgentAudio, AgentError, AgentInterrupted, Modality, Transcript
from gateway.audio.formats import AGENT_INPUT_RATE_HZ
from tests.support.fakes import FakeAgentConnector, agent_tone
from tests.support.peers import HeadlessCaller, call_gateway, live_call, rms, tone_pcm

SILENCE_RMS = 50.0


async def test_voice_call_round_trip(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector()
    client = await start_gateway(connector)
    async with live_call(client, connected=False) as (caller, location):
        assert len(location.removeprefix("/calls/")) >= 22  # >= 128 random bits, base64url
        await caller.wait_connected()
        session = await caller.wait_message(type="session")
        assert session["version"] == 1
        assert session["call_id"] == location.removeprefix("/calls/")
        assert session["session_id"] == connector.last.session_id
        assert session["mode"] == "audio"

        # Caller speaks 1 s of tone: the agent gets ~1 s of loud 16 kHz PCM in 40 ms chunks.
        caller.mic.play_pcm(tone_pcm(1.0))
        agent = connector.last
        async with asyncio.timeout(5):
            while len(agent.audio) < 2 * AGENT_INPUT_RATE_HZ * 1.0:
                await asyncio.sleep(0.05)
        assert len(agent.audio) / agent.audio_chunks == 1280  # 40 ms of 16 kHz s16
        loud = [agent.audio[i : i + 1280] for i in range(0, len(agent.audio), 1280)]
        assert sum(rms(bytes(c)) > 1000 for c in loud) >= 20  # >= 0.8 s of the tone

        # Agent speaks 1 s: the caller hears ~1 s of non-silent audio, paced at 50 fps.
        start = len(caller.frames)
        agent.emit(AgentAudio(agent_tone(1.0)))
        async with asyncio.timeout(5):  # the reply, then 0.5 s of silence: RTP keeps flowing
            while not (
                any(f.rms > 1000 for f in caller.frames[start:])
                and all(f.rms < SILENCE_RMS for f in caller.frames[-25:])
            ):
                await asyncio.sleep(0.05)
        heard = caller.frames[start:]
        voiced = [f for f in heard if f.rms > 1000]
        assert 40 <= len(voiced) <= 60  # ~1 s of 20 ms frames
        # The tone's energy (amplitude 8000: RMS 5657) survives our Opus encoding.
        assert 0.8 * 5657 <= sorted(f.rms for f in voiced)[len(voiced) // 2] <= 1.2 * 5657
        span = heard[-1].at - heard[0].at
        assert 40 <= (len(heard) - 1) / span <= 60  # ~50 frames per second on the wire

        response = await client.delete(location)
        assert response.status == 204
        assert agent.closed
        assert (await client.get("/healthz")).status == 200
        assert (await (await client.get("/healthz")).json())["calls"] == 0
        assert (await client.delete(location)).status == 404


async def test_stats_report_calls_cpu_and_memory(start_gateway: Callable[..., Any]) -> None:
    client = await start_gateway(FakeAgentConnector())
    idle = await (await client.get("/stats")).json()
    assert idle["calls"] == 0
    assert idle["pid"] == os.getpid()
    assert idle["rss_bytes"] > 10 * 2**20  # a Python process with aiortc loaded
    async with live_call(client) as (caller, _):
        await caller.wait_connected()
        await asyncio.sleep(1.0)
        busy = await (await client.get("/stats")).json()
    assert busy["calls"] == 1
    assert busy["cpu_s"] > idle["cpu_s"]  # a second of media costs CPU
    assert busy["at_s"] > idle["at_s"]
    assert [w["pid"] for w in busy["workers"]] == [os.getpid()]


async def test_text_round_trip_and_bad_messages(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector(echo_text=True)
    client = await start_gateway(connector)
    async with live_call(client, connected=False) as (caller, location):
        await caller.wait_channel_open()
        await caller.wait_message(type="session")
        for bad in [
            "not json",
            "[1]",
            '{"type": "nope"}',
            '{"type": "text"}',
            '{"type": "text", "text": ""}',
            '{"type": "text", "text": 5}',
        ]:
            caller.send(bad)
        caller.send({"type": "text", "text": "hello agent"})
        reply = await caller.wait_message(type="transcript", role="agent")
        assert reply == {
            "type": "transcript",
            "role": "agent",
            "text": "You said: hello agent",
            "final": True,
        }
        await caller.wait_message(type="turn_complete")
        errors = [m for m in caller.messages if m["type"] == "error"]
        assert len(errors) == 6
        assert {e["code"] for e in errors} == {"invalid_message"}
        assert not any(e["fatal"] for e in errors)
        assert connector.last.texts == ["hello agent"]
        assert (await client.delete(location)).status == 204


async def test_interrupted_flushes_queued_agent_audio(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector()
    client = await start_gateway(connector)
    async with live_call(client) as (caller, location):
        await caller.wait_message(type="session")
        agent = connector.last
        agent.emit(AgentAudio(agent_tone(5.0)))  # a long reply, queued at once
        async with asyncio.timeout(5):
            while sum(f.rms > 1000 for f in caller.frames[-10:]) < 8:
                await asyncio.sleep(0.05)
        agent.emit(AgentInterrupted())
        message = await caller.wait_message(type="interrupted")
        assert message == {"type": "interrupted"}
        interrupted_at = caller.frames[-1].at
        await asyncio.sleep(0.6)
        after = [f for f in caller.frames if f.at > interrupted_at + 0.25]
        assert len(after) >= 10
        assert all(f.rms < SILENCE_RMS for f in after)  # the rest of the 5 s reply is gone
        assert (await client.delete(location)).status == 204


async def test_fatal_agent_error_ends_the_call(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector()
    client = await start_gateway(connector)
    async with live_call(client, connected=False) as (caller, location):
        await caller.wait_message(type="session")
        connector.last.emit(AgentError("agent_error", "the agent failed"))
        error = await caller.wait_message(type="error")
        assert error == {
            "type": "error",
            "code": "agent_error",
            "message": "the agent failed",
            "fatal": True,
        }
        async with asyncio.timeout(10):
            while caller.pc.connectionState not in ("closed", "failed"):
                await asyncio.sleep(0.05)
            while (await (await client.get("/healthz")).json())["calls"]:
                await asyncio.sleep(0.05)
        assert connector.last.closed
        assert (await client.delete(location)).status == 404


async def test_agent_ending_its_session_ends_the_call(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector()
    client = await start_gateway(connector)
    async with live_call(client) as (_caller, location):
        connector.last.end()
        async with asyncio.timeout(10):
            while (await (await client.get("/healthz")).json())["calls"]:
                await asyncio.sleep(0.05)
        assert (await client.delete(location)).status == 404


async def test_caller_without_data_channel_still_talks(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector()
    client = await start_gateway(connector)
    async with live_call(client, with_channel=False) as (caller, location):
        caller.mic.play_pcm(tone_pcm(0.5))
        connector.last.emit(Transcript("user", "hi", True))  # nowhere to go: not an error
        connector.last.emit(AgentAudio(agent_tone(0.5)))
        await asyncio.sleep(1.0)
        assert sum(f.rms > 1000 for f in caller.frames) >= 20
        assert len(connector.last.audio) >= 2 * AGENT_INPUT_RATE_HZ * 0.4
        assert (await client.delete(location)).status == 204


async def test_text_mode_and_session_continuation(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector(known_sessions={"conv-1"})
    client = await start_gateway(connector)
    async with live_call(client, query="?mode=text&session_id=conv-1", connected=False) as (
        caller,
        location,
    ):
        session = await caller.wait_message(type="session")
        assert session["session_id"] == "conv-1"
        assert session["mode"] == "text"
        assert connector.last.modality is Modality.TEXT
        assert (await client.delete(location)).status == 204


async def test_json_offer(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector()
    client = await start_gateway(connector)
    caller = HeadlessCaller()
    try:
        response = await client.post(
            "/offer", json={"sdp": await caller.offer(), "type": "offer", "mode": "text"}
        )
        assert response.status == 200
        body = await response.json()
        assert body["type"] == "answer"
        assert body["session_id"] == connector.last.session_id
        await caller.accept(body["sdp"])
        await caller.wait_connected()
        assert (await client.delete(f"/calls/{body['call_id']}")).status == 204
    finally:
        await caller.close()


async def test_trickle_candidates_patch(start_gateway: Callable[..., Any]) -> None:
    connector = FakeAgentConnector()
    client = await start_gateway(connector)
    async with live_call(client) as (caller, location):
        frag = "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
        assert caller.etag is not None
        trickle = {"Content-Type": "application/trickle-ice-sdpfrag", "If-Match": caller.etag}
        response = await client.patch(location, data=frag, headers=trickle)
        assert response.status == 204
        bad = await client.patch(location, data="a=candidate:x", headers=trickle)
        assert bad.status == 400
        wrong_type = await client.patch(location, data=frag, headers={"Content-Type": "text/plain"})
        assert wrong_type.status == 415
        unknown = await client.patch("/calls/nope", data=frag, headers=trickle)
        assert unknown.status == 404
        assert (await client.delete(location)).status == 204


async def test_hang_up_while_connecting(start_gateway: Callable[..., Any]) -> None:
    """Hanging up before ICE completes leaves no task behind on either side."""
    connector = FakeAgentConnector()
    client = await start_gateway(connector)
    for _ in range(3):
        caller = HeadlessCaller()
        try:
            location = await call_gateway(client, caller)
            assert (await client.delete(location)).status == 204
        finally:
            await caller.close()


async def test_call_whose_media_never_connects_is_ended(start_gateway: Callable[..., Any]) -> None:
    """An offer whose caller never completes ICE is released after the setup timeout."""
    connector = FakeAgentConnector()
    client = await start_gateway(connector, call_setup_timeout_s=1.0)
    caller = HeadlessCaller()
    try:
        response = await client.post(
            "/calls", data=await caller.offer(), headers={"Content-Type": "application/sdp"}
        )
        assert response.status == 201  # ... and the caller never applies the answer
        async with asyncio.timeout(5):
            while (await (await client.get("/healthz")).json())["calls"]:
                await asyncio.sleep(0.1)
        assert connector.last.closed
        assert (await client.delete(response.headers["Location"])).status == 404
    finally:
        await caller.close()
