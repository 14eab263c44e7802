"""A gateway under hostile load, and hostile callers' media.

Pins down:
- one in-process gateway (fake agent, loopback) taking, in phases, thousands of
  mutated offers on `/calls` and `/offer`, mutated sdpfrags and 1,000-candidate trickle
  floods, JSON and HTTP abuse and hostile candidate floods: no response is a 5xx,
  every error carries a JSON body, the gateway ends with no call, its threads and
  file descriptors come back to the baseline, and the STUN checks a hostile call
  makes the gateway send stay within the candidate cap;
- a caller sending RTP at 10x real time feeds the agent at real time (the rest is
  policed), a caller at real time loses nothing to the policer;
- a data-channel message past the size the answer advertises ends the call with a
  fatal `message_too_large` error, and nothing of it is held;
- the real-time policer and Opus packet durations, as units.

The load is a list of phases (`PHASES`) run against one gateway, each adding to one
`LoadReport`; a phase is `async def phase(gateway: HostileGateway) -> None`, so slow
clients or rate limits can be added as phases without touching the runner.
`HOSTILE_LOAD_SCALE` (default 1) multiplies the request counts (`scripts/fuzz` runs 3).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import av
import pytest
from aiohttp.test_utils import TestClient
from aiortc.mediastreams import MediaStreamError

from gateway.audio.formats import AGENT_INPUT_RATE_HZ, SAMPLE_BYTES
from gateway.loadtest.prompt import FRAME_S, FRAME_SAMPLES, silence_payload
from gateway.loadtest.source_track import TIME_BASE
from gateway.rtc.ice_policy import DEFAULT_MAX_CANDIDATES
from gateway.rtc.real_time_policer import (
    DEFAULT_BURST_S,
    DEFAULT_RATE,
    RealTimePolicer,
    opus_packet_duration_s,
)
from tests.fuzz.amplification import attack, sdpfrag
from tests.fuzz.edge import JSON, SDP, SDPFRAG
from tests.fuzz.mutations import HOSTILE_JSON, random_offer, random_sdpfrag
from tests.fuzz.udp_listeners import UdpListeners
from tests.support.fakes import FakeAgentConnector
from tests.support.peers import HeadlessCaller, PacedSourceTrack, call_gateway

SCALE = int(os.environ.get("HOSTILE_LOAD_SCALE", "1"))
#: Requests in flight at once (the machine has two cores; more only queues).
CONCURRENCY = 8
#: A hostile call never connects; the load's gateway gives up on one after this.
SETUP_TIMEOUT_S = 2.0
#: aioice sends a check at most 7 times (RTO 0.5 s doubling, 6 retransmissions).
MAX_TRANSMISSIONS = 7
#: The event loop's default executor starts threads on demand (name lookups of the
#: test client) and keeps them: up to min(32, cores + 4). Nothing else may remain.
THREAD_TOLERANCE = min(32, (os.cpu_count() or 1) + 4)
#: What aiohttp's router answers itself (text) for a method or path no route has.
_ROUTER_REPLIES = {b"405: Method Not Allowed", b"404: Not Found"}


@dataclass
class LoadReport:
    """Every response of every phase: statuses, and any error body that was not JSON."""

    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    not_json: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)

    def record(self, phase: str, status: int, body: bytes) -> None:
        self.statuses.setdefault(phase, Counter())[status] += 1
        if body in _ROUTER_REPLIES:  # aiohttp's router, before any handler: not ours
            self.numbers["router_replies"] = self.numbers.get("router_replies", 0) + 1
        elif status >= 400:
            try:
                assert "error" in json.loads(body)
            except (ValueError, AssertionError, TypeError):
                self.not_json.append(f"{phase}: {status} {body[:80]!r}")

    def server_errors(self) -> dict[str, int]:
        return {
            phase: sum(n for status, n in counts.items() if status >= 500)
            for phase, counts in self.statuses.items()
            if any(status >= 500 for status in counts)
        }


@dataclass
class HostileGateway:
    """What a phase gets: the gateway's client, a seeded generator, the report."""

    client: TestClient[Any, Any]
    rng: random.Random
    report: LoadReport

    async def send(
        self, phase: str, method: str, path: str, data: bytes | str, headers: dict[str, str]
    ) -> int:
        """One request; a call it starts is hung up at once."""
        async with self.client.request(method, path, data=data, headers=headers) as response:
            body = await response.read()
            self.report.record(phase, response.status, body)
            location = response.headers.get("Location")
            if response.status == 200 and path == "/offer":
                location = f"/calls/{json.loads(body)['call_id']}"
        if location and response.status in (200, 201):
            async with self.client.delete(location) as hung_up:
                self.report.record(phase, hung_up.status, await hung_up.read())
        return response.status


async def concurrently(jobs: Iterable[Callable[[], Awaitable[Any]]]) -> None:
    """Run `jobs` with `CONCURRENCY` in flight."""
    pending = iter(jobs)

    async def worker() -> None:
        for job in pending:
            await job()

    async with asyncio.TaskGroup() as group:
        for n in range(CONCURRENCY):
            group.create_task(worker(), name=f"hostile-load/{n}")


async def mutated_offers(gateway: HostileGateway) -> None:
    """Mutated corpus offers, half to `/calls`, half to `/offer` as JSON."""
    offers = [random_offer(gateway.rng) for _ in range(2000 * SCALE)]

    def job(n: int, offer: str) -> Callable[[], Awaitable[int]]:
        if n % 2:
            body = json.dumps({"sdp": offer, "type": "offer"})
            return lambda: gateway.send("offers", "POST", "/offer", body, JSON)
        data = offer.encode("utf-8", "surrogatepass")
        return lambda: gateway.send("offers", "POST", "/calls", data, SDP)

    await concurrently(job(n, offer) for n, offer in enumerate(offers))


async def trickle_floods(gateway: HostileGateway) -> None:
    """Calls that never connect, each sent mutated sdpfrags and 1,000 candidates."""
    listeners = await UdpListeners.open(200)
    try:
        for _ in range(3):
            caller = HeadlessCaller()
            try:
                # No end-of-candidates in the offer, or trickled ones would be ignored.
                offer = (await caller.offer()).replace("a=end-of-candidates\r\n", "")
                async with gateway.client.post("/calls", data=offer, headers=SDP) as response:
                    assert response.status == 201
                    location = response.headers["Location"]
                    trickle = {**SDPFRAG, "If-Match": response.headers["ETag"]}
                frags = [random_sdpfrag(gateway.rng) for _ in range(100 * SCALE)]
                lines = list(listeners.candidate_lines())
                lines += [
                    f"a=candidate:{n} 1 udp 1 127.0.0.254 {2000 + n} typ host" for n in range(800)
                ]
                frags += [sdpfrag(lines[:500]), sdpfrag(lines[500:])]
                for frag in frags:
                    async with gateway.client.patch(location, data=frag, headers=trickle) as r:
                        gateway.report.record("trickle", r.status, await r.read())
                await asyncio.sleep(1.0)  # the checks of 16 candidates start in 0.3 s
                async with gateway.client.delete(location) as r:
                    gateway.report.record("trickle", r.status, await r.read())
            finally:
                await caller.close()
        gateway.report.numbers["trickle_probed"] = len(listeners.probed())
    finally:
        listeners.close()


async def json_and_http_abuse(gateway: HostileGateway) -> None:
    """Bodies `/offer` cannot use; methods, types and paths the edge does not serve."""
    for _ in range(SCALE):
        for body in HOSTILE_JSON:
            await gateway.send("abuse", "POST", "/offer", body, JSON)
        for method, path, headers in [
            ("POST", "/calls", {"Content-Type": "text/plain"}),
            ("POST", "/calls", {"Content-Type": "application/sdp; charset=latin-1"}),
            ("POST", "/calls?mode=%00", SDP),
            ("POST", "/calls?session_id=" + "s" * 5000, SDP),
            ("PATCH", "/calls/" + "A" * 24, SDPFRAG),
            ("PATCH", "/calls/..%2f..%2fetc", SDPFRAG),
            ("PATCH", "/calls/AAAAAAAAAAAAAAAAAAAAAAAA", {"Content-Type": "application/sdp"}),
            ("DELETE", "/calls/" + "\u00e9" * 24, {}),
            ("PUT", "/calls", SDP),
            ("POST", "/offer", {"Content-Type": "application/json; charset=utf-16"}),
        ]:
            await gateway.send("abuse", method, path, b"\xff\xfe v=0", headers)


async def candidate_floods(gateway: HostileGateway) -> None:
    """Hostile calls: a 256-character ufrag and 200 candidates at listeners."""
    listeners = await UdpListeners.open(200)
    try:
        result = await attack(
            gateway.client,
            listeners,
            calls=3 * SCALE,
            offer_candidates=100,
            ufrag_chars=256,
            wait_s=SETUP_TIMEOUT_S + 1,
        )
    finally:
        listeners.close()
    for status in result.statuses:
        gateway.report.record("candidates", status, b"{}")
    gateway.report.numbers["stun_per_call"] = result.stun_per_call
    gateway.report.numbers["candidates_probed"] = result.probed
    gateway.report.numbers["amplification"] = result.factor


PHASES: list[Callable[[HostileGateway], Awaitable[None]]] = [
    mutated_offers,
    trickle_floods,
    json_and_http_abuse,
    candidate_floods,
]


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_hostile_load_gets_no_5xx_and_leaves_nothing_behind(
    start_gateway: Callable[..., Any],
) -> None:
    client: TestClient[Any, Any] = await start_gateway(
        FakeAgentConnector(),
        call_setup_timeout_s=SETUP_TIMEOUT_S,
        max_pending_calls_per_source=1000,  # one source here; tests/test_ice_policy.py
        max_calls=1000,
    )
    fds_before, threads_before = descriptors(), threads()
    gateway = HostileGateway(client, random.Random(12), LoadReport())
    started = time.monotonic()
    for phase in PHASES:
        await phase(gateway)
    elapsed = time.monotonic() - started
    report = gateway.report
    async with asyncio.timeout(SETUP_TIMEOUT_S + 5):  # hostile calls give up by then
        while await _live_calls(client):
            await asyncio.sleep(0.1)
    connector = client.session.connector
    assert connector is not None
    await connector.close()  # keep-alive sockets, ours and the server's
    async with asyncio.timeout(5):
        while descriptors() > fds_before:
            await asyncio.sleep(0.1)
    counts = {phase: dict(c) for phase, c in report.statuses.items()}
    print(f"\nhostile load: {elapsed:.1f} s, {counts}, {report.numbers}, threads "
          f"{threads_before} -> {threads()}, fds {fds_before} -> {descriptors()}")  # fmt: skip
    assert report.server_errors() == {}
    assert report.not_json == []
    assert sum(sum(c.values()) for c in report.statuses.values()) > 2500 * SCALE
    assert threads() <= threads_before + THREAD_TOLERANCE
    assert report.numbers["stun_per_call"] <= DEFAULT_MAX_CANDIDATES * MAX_TRANSMISSIONS
    assert report.numbers["candidates_probed"] <= DEFAULT_MAX_CANDIDATES
    assert report.numbers["trickle_probed"] <= DEFAULT_MAX_CANDIDATES


async def _live_calls(client: TestClient[Any, Any]) -> int:
    async with client.get("/healthz") as response:
        calls: int = (await response.json())["calls"]
    return calls


class FloodingTrack(PacedSourceTrack):
    """A hostile microphone: 20 ms Opus packets `speedup` times faster than real time."""

    def __init__(self, speedup: float) -> None:
        super().__init__()
        self._gap_s = FRAME_S / speedup
        self.sent_packets = 0
        self.first_sent_at: float | None = None

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        await asyncio.sleep(self._gap_s)
        packet = av.Packet(silence_payload())
        packet.pts = self.sent_packets * FRAME_SAMPLES
        packet.time_base = TIME_BASE
        self.sent_packets += 1
        self.first_sent_at = self.first_sent_at or time.monotonic()
        return packet


async def test_rtp_at_ten_times_real_time_reaches_the_agent_at_real_time(
    start_gateway: Callable[..., Any],
) -> None:
    connector = FakeAgentConnector()
    client: TestClient[Any, Any] = await start_gateway(connector)
    mic = FloodingTrack(speedup=10)
    caller = HeadlessCaller(mic=mic, with_channel=False)
    try:
        await call_gateway(client, caller)
        await caller.wait_connected()
        await asyncio.sleep(3.0)
        assert mic.first_sent_at is not None
        elapsed = time.monotonic() - mic.first_sent_at
        sent_s = mic.sent_packets * FRAME_S
        heard_s = len(connector.last.audio) / (AGENT_INPUT_RATE_HZ * SAMPLE_BYTES)
    finally:
        await caller.close()
    print(f"\n{elapsed:.2f} s: sent {sent_s:.1f} s of audio, the agent got {heard_s:.2f} s")
    # A flood: twice real time at least (the sender shares this busy loop; unpoliced,
    # the agent would get all of it, over the bound below).
    assert sent_s > 2 * elapsed
    # Real time, plus the burst, plus one 40 ms chunk still in the pump, plus slack.
    assert heard_s <= elapsed * DEFAULT_RATE + DEFAULT_BURST_S + 0.04 + 0.2
    assert heard_s >= elapsed * 0.8  # policed to real time, not starved


async def test_a_message_past_the_advertised_size_ends_the_call(
    start_gateway: Callable[..., Any],
) -> None:
    connector = FakeAgentConnector(echo_text=True)
    client: TestClient[Any, Any] = await start_gateway(connector)
    caller = HeadlessCaller()
    try:
        async with client.post("/calls", data=await caller.offer(), headers=SDP) as response:
            answer = await response.text()
        # A hostile caller ignores the advertised size (`0`: any size, to aiortc).
        await caller.accept(answer.replace("a=max-message-size:65536", "a=max-message-size:0"))
        await caller.wait_message(type="session")
        assert caller.channel is not None
        caller.channel.send(json.dumps({"type": "text", "text": "x" * 4000}))  # fine
        await caller.wait_message(type="transcript", role="agent")
        caller.channel.send("x" * 20_000_000)  # aiortc sends what it is given
        error = await caller.wait_message(type="error", code="message_too_large")
        assert error["fatal"] is True
        await asyncio.wait_for(caller.dropped.wait(), 10)
    finally:
        await caller.close()
    assert connector.last.closed
    assert await _live_calls(client) == 0


def test_opus_packet_durations_come_from_the_toc_byte() -> None:
    assert opus_packet_duration_s(silence_payload()) == pytest.approx(FRAME_S)
    assert opus_packet_duration_s(bytes([(1 << 3) | 0, 0])) == pytest.approx(0.020)  # SILK 20
    assert opus_packet_duration_s(bytes([(3 << 3) | 1, 0])) == pytest.approx(0.120)  # 2 x 60
    assert opus_packet_duration_s(bytes([(16 << 3) | 0])) == pytest.approx(0.0025)  # CELT
    assert opus_packet_duration_s(bytes([(31 << 3) | 3, 6])) == pytest.approx(0.120)  # 6 x 20
    assert opus_packet_duration_s(bytes([(31 << 3) | 3, 7])) == 0.0  # 140 ms: invalid
    assert opus_packet_duration_s(bytes([(31 << 3) | 3])) == 0.0  # no frame count
    assert opus_packet_duration_s(b"") == 0.0


def test_the_policer_passes_real_time_with_jitter_and_stalls_and_drops_a_flood() -> None:
    rng = random.Random(3)
    policer, dropped = RealTimePolicer(), 0
    for n in range(30_000):  # 10 minutes of 20 ms packets, +/- 30 ms of jitter
        at = n * 0.020 + rng.uniform(-0.03, 0.03)
        if n % 1000 == 999:
            at += 0.3  # a stalled loop: packets queue and arrive together after it
        dropped += not policer.admit(0.020, at)
    assert dropped == 0
    flood, admitted = RealTimePolicer(), 0
    for n in range(1000):  # 20 s of audio in 2 s
        admitted += flood.admit(0.020, n * 0.002)
    assert admitted * 0.020 == pytest.approx(2.0 * DEFAULT_RATE + DEFAULT_BURST_S, abs=0.04)
