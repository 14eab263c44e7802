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

The callers are the load tester's `HeadlessCaller`s (packet listener, looped
pre-encoded microphone), so they cost what the load tester's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import statistics
import time
from dataclasses import dataclass, field

import aiohttp
import av
import numpy as np
from aiortc.rtp import RtpPacket

from gateway.audio.formats import WEBRTC_RATE_HZ
from gateway.audio.pcm import tone
from gateway.loadtest.headless_caller import HeadlessCaller
from gateway.loadtest.prompt import FRAME_SAMPLES, encode_pcm
from gateway.rtc import ice

VOICE_S = 1.0
QUIET_S = 2.5
GAP_S = 0.040
VOICED_RMS = 1000.0


def prompt_packets() -> list[bytes]:
    """One prompt cycle as Opus payloads (mono, 20 ms each)."""
    pcm = tone(VOICE_S, WEBRTC_RATE_HZ, 300.0, 6000) + bytes(int(QUIET_S * WEBRTC_RATE_HZ) * 2)
    frames = len(pcm) // (2 * FRAME_SAMPLES)
    return encode_pcm(np.frombuffer(pcm, dtype="<i2"))[:frames]


@dataclass
class Listener:
    """Takes the caller's packets in place of its jitter buffer: records arrivals,
    decodes for energy."""

    arrivals: list[float] = field(default_factory=list)
    voiced: int = 0
    decoder: av.AudioCodecContext = field(
        default_factory=lambda: av.AudioCodecContext.create("libopus", "r")
    )

    def on_packet(self, packet: RtpPacket) -> None:
        self.arrivals.append(time.monotonic())
        for frame in self.decoder.decode(av.Packet(packet.payload)):
            pcm = frame.to_ndarray().astype(np.float64)
            if float(np.sqrt(np.mean(pcm**2))) > VOICED_RMS:
                self.voiced += 1


async def one_call(
    session: aiohttp.ClientSession,
    url: str,
    payloads: list[bytes],
    seconds: float,
    measure_from: float,
) -> dict[str, float]:
    listener = Listener()
    caller = HeadlessCaller(packet_listener=listener.on_packet)
    caller.mic.loop(payloads, phase=random.randrange(len(payloads)))
    try:
        dialed = await caller.dial(session, url)
        if dialed.status != 201:
            return {"refused": dialed.status}
        await asyncio.sleep(seconds)
    finally:
        await caller.hang_up(session, url)
        await caller.close()
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
