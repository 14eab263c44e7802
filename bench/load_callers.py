"""Cheap headless aiortc callers for CPU profiling of a gateway in another process.

    python -m bench.load_callers --url http://127.0.0.1:8090 --calls 20 --seconds 30

Each caller loops a prompt (1 s of a 300 Hz tone, then 2.5 s of quiet, random
phase per caller) as pre-encoded Opus packets, so a caller costs little CPU: no
encoder, no audio-level loop. Received packets are taken straight from the RTP
receiver (no jitter buffer) and decoded only to measure their energy. At the end it
prints one JSON line: per-caller packets, voiced frames, inter-packet gaps (counted
from 1 s after the last call started: call set-up stalls the loops), and the
callers' own worst event-loop stall (a gap seen on every call at once with a stall
this large is the callers' doing, not the gateway's).

Benchmark only: it swaps the receiver's private jitter buffer for a packet tap, as
`gateway.rtc.receive_path` does (and through its documented attribute name).
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import itertools
import json
import random
import statistics
import time
from dataclasses import dataclass, field

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

from gateway.rtc import ice, peer_connection
from gateway.rtc.receive_path import JITTER_BUFFER_ATTR

RATE_HZ = 48_000
FRAME_SAMPLES = 960
FRAME_S = FRAME_SAMPLES / RATE_HZ
TIME_BASE = fractions.Fraction(1, RATE_HZ)
VOICE_S = 1.0
QUIET_S = 2.5
GAP_S = 0.040
VOICED_RMS = 1000.0


def prompt_packets() -> list[bytes]:
    """One prompt cycle as Opus payloads (mono, 20 ms each)."""
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate, codec.format, codec.layout = 32_000, "s16", "mono"
    codec.sample_rate, codec.time_base = RATE_HZ, TIME_BASE
    codec.options = {"application": "voip"}
    t = np.arange(int(VOICE_S * RATE_HZ)) / RATE_HZ
    voice = (6000 * np.sin(2 * np.pi * 300 * t)).astype("<i2")
    pcm = np.concatenate([voice, np.zeros(int(QUIET_S * RATE_HZ), dtype="<i2")])
    payloads: list[bytes] = []
    for i in range(len(pcm) // FRAME_SAMPLES):
        frame = av.AudioFrame.from_ndarray(
            pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES].reshape(1, -1),
            format="s16",
            layout="mono",
        )
        frame.sample_rate, frame.pts, frame.time_base = RATE_HZ, i * FRAME_SAMPLES, TIME_BASE
        payloads += [bytes(p) for p in codec.encode(frame)]
    return payloads


class PromptTrack(MediaStreamTrack):
    """Loops pre-encoded packets in real time; aiortc packs them without encoding."""

    kind = "audio"

    def __init__(self, payloads: list[bytes], phase: int) -> None:
        super().__init__()
        self._payloads = payloads
        self._index = phase
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        elif (wait := self._start + self._pts / RATE_HZ - now) > 0:
            await asyncio.sleep(wait)
        packet = av.Packet(self._payloads[self._index % len(self._payloads)])
        packet.pts, packet.time_base = self._pts, TIME_BASE
        self._index += 1
        self._pts += FRAME_SAMPLES
        return packet


@dataclass
class Listener:
    """Stands in for the caller's jitter buffer: records arrivals, decodes for energy."""

    arrivals: list[float] = field(default_factory=list)
    voiced: int = 0
    decoder: av.CodecContext = field(default_factory=lambda: av.CodecContext.create("libopus", "r"))

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self.arrivals.append(time.monotonic())
        for frame in self.decoder.decode(av.Packet(packet.payload)):
            pcm = frame.to_ndarray().astype(np.float64)
            if float(np.sqrt(np.mean(pcm**2))) > VOICED_RMS:
                self.voiced += 1
        return False, None


async def one_call(
    session: aiohttp.ClientSession,
    url: str,
    payloads: list[bytes],
    seconds: float,
    measure_from: float,
) -> dict[str, float]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    listener = Listener()
    pc.addTrack(PromptTrack(payloads, phase=random.randrange(len(payloads))))
    pc.createDataChannel("events")
    location = None
    try:
        await pc.setLocalDescription(await pc.createOffer())
        async with session.post(
            f"{url}/calls",
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as response:
            if response.status != 201:
                return {"refused": response.status}
            location = response.headers["Location"]
            answer = await response.text()
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        receiver = pc.getTransceivers()[0].receiver
        setattr(receiver, JITTER_BUFFER_ATTR, listener)
        await asyncio.sleep(seconds)
    finally:
        if location is not None:
            async with session.delete(f"{url}{location}"):
                pass
        await peer_connection.close_quietly(pc)
    # Only the steady state: every call connected (setting calls up stalls loops).
    arrivals = [t for t in listener.arrivals if t >= measure_from]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    return {
        "packets": len(listener.arrivals),
        "voiced": listener.voiced,
        "rate_pps": (len(arrivals) - 1) / span if span else 0.0,
        "gaps": sum(g > GAP_S for g in gaps),
        "intervals": len(gaps),
        "max_gap_ms": 1000 * max(gaps, default=0.0),
    }


async def worst_stall_s(measure_from: float, until: asyncio.Event) -> float:
    """The callers' own loop: the longest a 10 ms sleep overslept, after `measure_from`."""
    worst = 0.0
    while not until.is_set():
        start = time.monotonic()
        await asyncio.sleep(0.01)
        if start >= measure_from:
            worst = max(worst, time.monotonic() - start - 0.01)
    return worst


async def run(url: str, calls: int, seconds: float, ramp_s: float) -> dict[str, object]:
    ice.restrict_host_addresses(["127.0.0.1"])
    payloads = prompt_packets()
    async with aiohttp.ClientSession() as session:
        tasks = []
        measure_from = time.monotonic() + ramp_s + 1.0
        for i in range(calls):
            # Every call lasts until the same end time; starts are spread over ramp_s.
            remaining = seconds + ramp_s * (1 - i / max(calls, 1))
            call = one_call(session, url, payloads, remaining, measure_from)
            tasks.append(asyncio.create_task(call))
            await asyncio.sleep(ramp_s / max(calls, 1))
        done = asyncio.Event()
        monitor = asyncio.create_task(worst_stall_s(measure_from, done))
        results = list(await asyncio.gather(*tasks))
        done.set()
        return {"calls": results, "callers_worst_stall_ms": 1000 * await monitor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8090")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0, help="after the ramp")
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds to start all calls")
    args = parser.parse_args()
    report = asyncio.run(run(args.url, args.calls, args.seconds, args.ramp))
    calls = report["calls"]
    assert isinstance(calls, list)
    rates = [r["rate_pps"] for r in calls if "rate_pps" in r]
    report["median_rate_pps"] = statistics.median(rates) if rates else 0.0
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
