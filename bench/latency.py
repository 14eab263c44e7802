"""Latency the gateway adds: uplink, downlink and barge-in, measured at our seams.

    python -m bench.latency [--trials 30] [--agent fake|adk|both] [--json latency.json]

One process, one event loop, one monotonic clock: an in-process gateway
(`gateway.app.create_app`) and a headless aiortc caller over loopback.

Instruments (none of them changes production code):
- *gateway tap*: the gateway's receive path swaps the receiver's jitter buffer for a
  packet tap (`gateway.rtc.receive_path`); the bench wraps that tap and records the
  arrival time of every packet the receiver accepted (after ICE, DTLS and SRTP),
  then forwards it unchanged;
- *agent seam*: a wrapper around the `AgentConnector` (`gateway.agent_api`) records
  when each 16 kHz chunk is handed to the agent (`send_audio`) and when the call
  takes each agent event out of `events()`;
- *agent emit*: the fake agent records when it emits; through ADK, a subclass of the
  `scripted-live` model records when it queues each response for ADK and when each
  caller chunk reaches it (`send_realtime`);
- *caller tap*: the caller's receiver has no jitter buffer and no decoder: a tap
  records each packet's arrival (after the caller's SRTP), ~0.1 ms after the
  gateway sent it.

Payloads are decoded after the run (a fresh Opus decoder per stream, in sequence
order), so no decoding happens in the measured path. A packet is *loud* or *silent*
by the RMS of the second half of its decoded 20 ms: Opus delays its output by 6.5 ms,
so the first half of the packet that carries an onset still rings with what came
before; the second half says what the sender's frame held.

What each number is:
- `uplink tap -> seam`: caller packet accepted by the gateway's receiver to the 16 kHz
  chunk with its audio handed to the agent: the reorder buffer, a task wake-up, Opus
  decode, 48 -> 16 kHz resampling and 20 ms chunking. The caller's own 20 ms
  packetization is before the tap and not included.
- `uplink tap -> model` (ADK): the same, on to the live model's `send_realtime`, so
  ADK's `LiveRequestQueue` and live flow are included.
- `downlink emit -> seam`: the agent hands PCM over to the call taking it (fake: one
  queue hop; ADK: ADK's runner, our bridge's translation and its event queue).
- `downlink seam -> wire`: the call takes the agent's first PCM of a reply to the
  arrival at the caller of the first packet built from it: 24 -> 48 kHz resampling,
  the wait for the paced track's next 20 ms tick (uniform 0-20 ms, ~10 ms on average:
  frame alignment alone), Opus encoding in aiortc's executor, SRTP, loopback.
- `barge-in seam -> wire`: the call takes `interrupted` to the arrival of the first
  silent packet: the flush, then the same path as the downlink (again ~10 ms of
  frame alignment on average). `emit -> wire` rows are the sums, per trial.

The caller shares the event loop with the gateway: its own work (pacing, encoding,
SRTP) can delay a reading, so the numbers are upper bounds for the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp.test_utils import TestClient, TestServer
from aiortc.codecs.opus import OpusDecoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from gateway import signaling
from gateway.agent_api import (
    AgentAudio,
    AgentConnector,
    AgentEvent,
    AgentInterrupted,
    AgentSession,
    Modality,
    TurnComplete,
)
from gateway.app import create_app
from gateway.audio.formats import AGENT_OUTPUT_RATE_HZ, PTIME_S, WEBRTC_RATE_HZ
from gateway.calls.manager import CallManager
from gateway.config import load_settings
from gateway.rtc import _aiortc, ice
from tests.support.peers import HeadlessCaller, call_gateway, tone_pcm

#: A decoded packet (second half) or a 16 kHz chunk at least this loud holds the tone;
#: below `SILENT_RMS` it holds silence. The tones are ~4200-5700 RMS.
LOUD_RMS = 1000.0
SILENT_RMS = 100.0
#: A reading more than this after its cause belongs to something else.
MATCH_WINDOW_S = 0.3
CALLER_RATE_HZ = WEBRTC_RATE_HZ
FRAME_S = PTIME_S

Clock = Callable[[], float]
now: Clock = time.monotonic


def rms(samples: np.ndarray[Any, Any]) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


def stereo_s16(frame: Any) -> np.ndarray[Any, Any]:
    """The interleaved samples of a decoded (48 kHz stereo s16) frame, without padding."""
    return np.frombuffer(bytes(frame.planes[0]), dtype="<i2")[: frame.samples * 2]


def pcm_rms(pcm: bytes) -> float:
    return rms(np.frombuffer(pcm, dtype="<i2"))


# --- instruments ------------------------------------------------------------------


@dataclass
class PacketLog:
    """Packets a receiver accepted: (arrival, sequence number, RTP timestamp, payload)."""

    packets: list[tuple[float, int, int, bytes]] = field(default_factory=list)

    def levels(self) -> list[tuple[float, float]]:
        """(arrival, RMS of the decoded second half) per packet, in sequence order."""
        decoder = OpusDecoder()
        if not self.packets:
            return []
        first = self.packets[0][1]
        # Sequence numbers start anywhere and wrap at 2**16: order by the distance from
        # the first one (a run holds far fewer than 2**15 packets).
        ordered = sorted(self.packets, key=lambda p: (p[1] - first) % 65536)
        out = []
        for at, _, timestamp, payload in ordered:
            frames = decoder.decode(JitterFrame(data=payload, timestamp=timestamp))
            samples = np.concatenate([stereo_s16(f) for f in frames])
            out.append((at, rms(samples[len(samples) // 2 :])))
        return out


def recorder(log: PacketLog) -> Callable[[RtpPacket], None]:
    """Records every packet it is shown in `log`."""

    def record(packet: RtpPacket) -> None:
        log.packets.append((now(), packet.sequence_number, packet.timestamp, bytes(packet.payload)))

    return record


@dataclass
class Marks:
    """Timestamped readings: chunk levels in, agent events out, by where they were seen."""

    chunks: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    events: dict[str, list[tuple[float, str]]] = field(default_factory=dict)

    def chunk(self, where: str, pcm: bytes) -> None:
        self.chunks.setdefault(where, []).append((now(), pcm_rms(pcm)))

    def event(self, where: str, kind: str) -> None:
        self.events.setdefault(where, []).append((now(), kind))

    def starts(self, where: str, kind: str) -> list[float]:
        """Times of `kind` events; for audio, only the first chunk of each reply."""
        out, in_reply = [], False
        for at, seen in self.events.get(where, []):
            if seen == "audio":
                if not in_reply and kind == "audio":
                    out.append(at)
                in_reply = True
            else:
                in_reply = False
                if seen == kind:
                    out.append(at)
        return out


MARKS = Marks()


class _SeamSession:
    """An `AgentSession` that records what crosses the seam, then passes it on."""

    def __init__(self, inner: AgentSession) -> None:
        self._inner = inner

    @property
    def session_id(self) -> str:
        return self._inner.session_id

    def send_audio(self, pcm: bytes) -> None:
        MARKS.chunk("seam", pcm)
        self._inner.send_audio(pcm)

    def send_text(self, text: str) -> None:
        self._inner.send_text(text)

    async def events(self) -> AsyncIterator[AgentEvent]:
        async for event in self._inner.events():
            record_event("seam", event)
            yield event


def record_event(where: str, event: AgentEvent) -> None:
    """Audio, `interrupted` and `turn_complete`: what starts and ends a reply."""
    if isinstance(event, AgentAudio):
        MARKS.event(where, "audio")
    elif isinstance(event, AgentInterrupted):
        MARKS.event(where, "interrupted")
    elif isinstance(event, TurnComplete):
        MARKS.event(where, "turn_complete")


@dataclass
class SeamConnector:
    """Wraps any `AgentConnector`; its sessions record at the seam."""

    inner: AgentConnector

    @contextlib.asynccontextmanager
    async def open_session(
        self, *, user_id: str, session_id: str | None, modality: Modality, call_id: str = ""
    ) -> AsyncIterator[AgentSession]:
        async with self.inner.open_session(
            user_id=user_id, session_id=session_id, modality=modality, call_id=call_id
        ) as session:
            yield _SeamSession(session)


@dataclass
class FakeAgent:
    """A fake agent the bench drives: emits audio and `interrupted` at known times."""

    sessions: list[FakeSession] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def open_session(
        self, *, user_id: str, session_id: str | None, modality: Modality, call_id: str = ""
    ) -> AsyncIterator[FakeSession]:
        session = FakeSession()
        self.sessions.append(session)
        try:
            yield session
        finally:
            session.queue.put_nowait(None)


@dataclass
class FakeSession:
    session_id: str = "bench"
    queue: asyncio.Queue[AgentEvent | None] = field(default_factory=asyncio.Queue)

    def send_audio(self, pcm: bytes) -> None:
        pass  # recorded at the seam

    def send_text(self, text: str) -> None:
        pass

    def emit(self, event: AgentEvent) -> None:
        record_event("emit", event)
        self.queue.put_nowait(event)

    async def events(self) -> AsyncIterator[AgentEvent]:
        while (event := await self.queue.get()) is not None:
            yield event


def timed_scripted_agent() -> Any:
    """The `scripted-live` agent, with a model that records what it gets and emits."""
    from google.adk.agents import Agent
    from google.genai import types

    from gateway.models.scripted import ScriptedLiveConnection, ScriptedLiveModel

    class TimedConnection(ScriptedLiveConnection):
        async def send_realtime(self, blob: Any) -> None:
            if isinstance(blob, types.Blob) and blob.data:
                MARKS.chunk("model", blob.data)
            await super().send_realtime(blob)

        def _emit(self, **fields: Any) -> None:
            content = fields.get("content")
            if content is not None and any(p.inline_data for p in content.parts or []):
                MARKS.event("emit", "audio")
            elif fields.get("interrupted"):
                MARKS.event("emit", "interrupted")
            elif fields.get("turn_complete"):
                MARKS.event("emit", "turn_complete")
            super()._emit(**fields)

    class TimedModel(ScriptedLiveModel):
        @contextlib.asynccontextmanager
        async def _connect(self, llm_request: Any) -> AsyncIterator[Any]:
            live = llm_request.live_connect_config
            modalities = (live.response_modalities if live else None) or []
            connection = TimedConnection(text_mode=types.Modality.TEXT in modalities)
            try:
                yield connection
            finally:
                await connection.close()

    return Agent(name="bench_agent", model=TimedModel(), instruction="Answer briefly.")


# --- the call ---------------------------------------------------------------------


@dataclass
class BenchCall:
    caller: HeadlessCaller
    gateway_in: PacketLog
    caller_in: PacketLog
    location: str


@contextlib.asynccontextmanager
async def bench_call(client: Any) -> AsyncIterator[BenchCall]:
    # The caller's receiver: a recording tap, no jitter buffer, no decoding.
    caller_in = PacketLog()
    caller = HeadlessCaller(packet_listener=recorder(caller_in))
    try:
        location = await call_gateway(client, caller)
        # The gateway has installed its receive path (during negotiation) and media
        # flows only once ICE completes: observing now sees every packet it accepts.
        manager = client.app[signaling.CALLS_KEY]
        assert isinstance(manager, CallManager)
        pc = manager.get(location.rsplit("/", 1)[1]).peer_connection
        assert pc is not None
        receiver = next(t.receiver for t in pc.getTransceivers() if t.kind == "audio")
        gateway_in = PacketLog()
        _aiortc.observe_packets(receiver, recorder(gateway_in))
        await caller.wait_connected()
        await caller.wait_channel_open()
        await asyncio.sleep(0.5)  # DTLS done, first packets through, encoders warm
        yield BenchCall(caller, gateway_in, caller_in, location)
        await client.delete(location)
    finally:
        await caller.close()


def silence_pcm(duration_s: float) -> bytes:
    return bytes(round(duration_s / FRAME_S) * int(FRAME_S * CALLER_RATE_HZ) * 2)


def burst_train(trials: int, burst_s: float, rng: random.Random) -> bytes:
    """Caller audio: frame-aligned tone bursts with 200-280 ms of silence between (less
    than the scripted model's 300 ms end of turn, so it does not answer each burst)."""
    pcm = bytearray(silence_pcm(0.3))
    for _ in range(trials):
        pcm += tone_pcm(burst_s, freq_hz=300.0, amplitude=6000)
        pcm += silence_pcm(rng.uniform(0.2, 0.28))
    return bytes(pcm)


async def play_and_wait(caller: HeadlessCaller, pcm: bytes) -> None:
    caller.mic.play_pcm(pcm)
    await asyncio.sleep(len(pcm) / (2 * CALLER_RATE_HZ) + 0.3)


async def fake_run(client: Any, agent: FakeAgent, trials: int, rng: random.Random) -> BenchCall:
    async with bench_call(client) as call:
        await play_and_wait(call.caller, burst_train(trials, 0.1, rng))
        session = agent.sessions[-1]
        reply = tone_pcm(0.1, freq_hz=440.0, amplitude=8000, rate_hz=AGENT_OUTPUT_RATE_HZ)
        for _ in range(trials):
            await asyncio.sleep(rng.uniform(0.25, 0.35))
            session.emit(AgentAudio(reply))
            session.emit(TurnComplete())
        await asyncio.sleep(0.4)
        long_reply = tone_pcm(1.0, freq_hz=440.0, amplitude=8000, rate_hz=AGENT_OUTPUT_RATE_HZ)
        for _ in range(trials):
            session.emit(AgentAudio(long_reply))
            await asyncio.sleep(rng.uniform(0.15, 0.3))
            session.emit(AgentInterrupted())
            await asyncio.sleep(0.25)
    return call


async def adk_run(client: Any, trials: int, rng: random.Random) -> BenchCall:
    """Uplink bursts, then cycles: a text turn (reply), a barge-in burst (interrupted),
    the model's answer to the burst (a second reply), played out to the end."""
    async with bench_call(client) as call:
        caller = call.caller
        await play_and_wait(caller, burst_train(trials, 0.1, rng))
        await asyncio.sleep(2.0)  # replies to the last bursts play out
        for _ in range(max(1, trials // 2)):
            caller.send({"type": "text", "text": "hi"})
            await asyncio.sleep(rng.uniform(0.25, 0.4))
            caller.mic.play_pcm(tone_pcm(0.2, freq_hz=300.0, amplitude=6000))
            await asyncio.sleep(0.2 + 0.3 + 1.5 + 0.4)
    return call


# --- analysis ---------------------------------------------------------------------


def is_loud(level: float) -> bool:
    return level >= LOUD_RMS


def is_silent(level: float) -> bool:
    return level < SILENT_RMS


def packet_onsets(levels: list[tuple[float, float]]) -> list[float]:
    """Arrival of each loud packet that follows a silent one."""
    return [
        at
        for (_, before), (at, level) in itertools.pairwise(levels)
        if before < SILENT_RMS and level >= LOUD_RMS
    ]


def first_after(
    readings: list[tuple[float, float]], after: float, test: Callable[[float], bool]
) -> float | None:
    for at, level in readings:
        if at >= after:
            if at - after > MATCH_WINDOW_S:
                return None
            if test(level):
                return at
    return None


def level_at(readings: list[tuple[float, float]], at: float) -> float | None:
    """The level of the last two readings before `at`, if they agree (else None)."""
    before = [level for t, level in readings if t < at][-2:]
    if len(before) < 2:
        return None
    if min(before) >= LOUD_RMS or max(before) < SILENT_RMS:
        return before[-1]
    return None


def latest_before(times: list[float], at: float) -> float | None:
    earlier = [t for t in times if t <= at and at - t < MATCH_WINDOW_S]
    return earlier[-1] if earlier else None


@dataclass
class Series:
    name: str
    values_ms: list[float] = field(default_factory=list)
    discarded: int = 0

    def add(self, start: float | None, end: float | None) -> None:
        if start is None or end is None:
            self.discarded += 1
        else:
            self.values_ms.append((end - start) * 1000)

    def summary(self) -> dict[str, Any]:
        v = sorted(self.values_ms)
        if not v:
            return {"name": self.name, "n": 0, "discarded": self.discarded}
        p95 = v[min(len(v) - 1, round(0.95 * (len(v) - 1)))]
        return {
            "name": self.name,
            "n": len(v),
            "median_ms": round(statistics.median(v), 2),
            "p95_ms": round(p95, 2),
            "max_ms": round(v[-1], 2),
            "min_ms": round(v[0], 2),
            "discarded": self.discarded,
            "values_ms": [round(x, 2) for x in self.values_ms],
        }


def analyse(call: BenchCall, agent: str) -> list[Series]:
    up_seam = Series(f"{agent}: uplink tap -> seam")
    up_model = Series(f"{agent}: uplink tap -> model")
    for onset in packet_onsets(call.gateway_in.levels()):
        up_seam.add(onset, first_after(MARKS.chunks.get("seam", []), onset, is_loud))
        if agent == "adk":
            up_model.add(onset, first_after(MARKS.chunks.get("model", []), onset, is_loud))
    wire = call.caller_in.levels()
    series = [up_seam] + ([up_model] if agent == "adk" else [])
    trials: list[tuple[str, str, Callable[[float], bool], Callable[[float], bool]]] = [
        ("audio", "downlink", is_silent, is_loud),
        ("interrupted", "barge-in", is_loud, is_silent),
    ]
    for kind, label, before_ok, after_ok in trials:
        emit_seam = Series(f"{agent}: {label} emit -> seam")
        seam_wire = Series(f"{agent}: {label} seam -> wire")
        emit_wire = Series(f"{agent}: {label} emit -> wire")
        emits = MARKS.starts("emit", kind)
        for seam in MARKS.starts("seam", kind):
            state = level_at(wire, seam)
            if state is None or not before_ok(state):
                seam_wire.discarded += 1  # the wire was not in the state the trial needs
                continue
            emit = latest_before(emits, seam)
            on_wire = first_after(wire, seam, after_ok)
            emit_seam.add(emit, seam)
            seam_wire.add(seam, on_wire)
            emit_wire.add(emit, on_wire)
        series += [emit_seam, seam_wire, emit_wire]
    return series


# --- main -------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    ice.restrict_host_addresses(["127.0.0.1"])
    settings = load_settings({"ice_addresses": "127.0.0.1"}, environ={})
    rng = random.Random(args.seed)
    results: list[Series] = []
    for agent in ("fake", "adk") if args.agent == "both" else (args.agent,):
        MARKS.chunks.clear()
        MARKS.events.clear()
        connector: Any
        if agent == "fake":
            fake = FakeAgent()
            connector = fake
        else:
            from google.adk.sessions import InMemorySessionService

            from gateway.agent_bridge import AdkAgentConnector

            connector = AdkAgentConnector(
                timed_scripted_agent(),
                InMemorySessionService(),
                app_name="bench",
            )
        client = TestClient(TestServer(create_app(settings, SeamConnector(connector))))
        await client.start_server()
        try:
            if agent == "fake":
                call = await fake_run(client, fake, args.trials, rng)
            else:
                call = await adk_run(client, args.trials, rng)
        finally:
            await client.close()
            if agent == "adk":
                await connector.close()
        results += analyse(call, agent)
    return {
        "trials": args.trials,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "series": [s.summary() for s in results],
    }


def print_table(report: dict[str, Any]) -> None:
    print(f"load average {report['load_average'][0]:.2f} on {report['cpus']} CPUs")
    print(f"| {'measurement':<34} | {'N':>3} | median | p95 | max | discarded |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for s in report["series"]:
        if not s["n"]:
            print(f"| {s['name']:<34} | 0 | | | | {s['discarded']} |")
            continue
        print(
            f"| {s['name']:<34} | {s['n']:>3} | {s['median_ms']:.1f} ms | {s['p95_ms']:.1f} ms"
            f" | {s['max_ms']:.1f} ms | {s['discarded']} |"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=30, help="trials per measurement")
    parser.add_argument("--agent", choices=("fake", "adk", "both"), default="both")
    parser.add_argument("--json", type=Path, default=Path("latency.json"))
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="5 trials (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials = 5
    logging.basicConfig(level=logging.WARNING)
    report = asyncio.run(run(args))
    print_table(report)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
