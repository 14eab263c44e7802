"""CPU per 20 ms frame of the gateway's own media code, each direction, no network.

    python -m bench.media_cpu --code before=/tmp/perf-base --code after=. [--frames 3000]

Quiet and repeatable where `bench.profile_calls` is end to end and noisy. For each
code tree (run in a subprocess with that tree first on the path) and in one process:
- outbound: `AgentAudioTrack` with its pacing skipped, pushed a 1.5 s reply every
  3.5 s (the load test's duty), plus what aiortc's sender does with each `recv()`
  result before RTP: a frame gets the RFC 6465 level loop and `OpusEncoder.encode`
  (the executor hop the sender adds is not counted), a packet only `pack`;
- inbound: Opus packets of a caller (mono, 32 kbit/s, 1 s tone then 2.5 s quiet)
  through `LossTolerantAudioTrack.on_packet` and `pump_caller_audio` to 16 kHz
  chunks, as the uplink runs them.
Benchmark only: it skips the track's pacing by replacing a private method.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.support import REPO_ROOT


async def outbound(frames: int) -> float:
    from aiortc.codecs import get_encoder
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    from aiortc.rtp import compute_audio_level_dbov
    from av.frame import Frame

    from gateway.audio.formats import AGENT_OUTPUT_RATE_HZ, WEBRTC_RATE_HZ
    from gateway.audio.pcm import tone
    from gateway.media_tracks import AgentAudioTrack

    track = AgentAudioTrack()

    async def no_pacing() -> None:
        return None

    track._wait_for_next_frame = no_pacing  # type: ignore[method-assign]
    codec = RTCRtpCodecParameters(
        mimeType="audio/opus", clockRate=WEBRTC_RATE_HZ, channels=2, payloadType=111
    )
    encoder = get_encoder(codec)
    reply = tone(1.5, AGENT_OUTPUT_RATE_HZ)
    cpu = time.process_time()
    for i in range(frames):
        if i % 175 == 0:  # every 3.5 s
            track.push(reply)
        data = await track.recv()
        if isinstance(data, Frame):
            compute_audio_level_dbov(data)
            encoder.encode(data)
        else:
            encoder.pack(data)
    track.stop()
    return (time.process_time() - cpu) / frames * 1e6


async def inbound(frames: int) -> float:
    from aiortc import MediaStreamTrack
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    from aiortc.rtp import RtpPacket

    from bench.load_callers import prompt_packets
    from gateway.audio.formats import (
        AGENT_INPUT_RATE_HZ,
        SAMPLE_BYTES,
        WEBRTC_FRAME_SAMPLES,
        WEBRTC_RATE_HZ,
        samples_per_frame,
    )
    from gateway.media_tracks import IN_CHUNK_BYTES, pump_caller_audio
    from gateway.rtc.receive_path import LossTolerantAudioTrack

    class Idle(MediaStreamTrack):
        kind = "audio"

        async def recv(self) -> None:  # type: ignore[override]
            await asyncio.Event().wait()

    codec = RTCRtpCodecParameters(
        mimeType="audio/opus", clockRate=WEBRTC_RATE_HZ, channels=2, payloadType=111
    )
    payloads = prompt_packets()
    track = LossTolerantAudioTrack(Idle(), [codec])
    chunks: list[int] = []
    pump = asyncio.create_task(pump_caller_audio(track, lambda pcm: chunks.append(len(pcm))))
    cpu = time.process_time()
    for seq in range(frames):
        track.on_packet(
            RtpPacket(
                payload_type=111,
                sequence_number=seq % 65536,
                timestamp=seq * WEBRTC_FRAME_SAMPLES,
                ssrc=1,
                payload=payloads[seq % len(payloads)],
            )
        )
        await asyncio.sleep(0)
    elapsed = time.process_time() - cpu
    track.stop()
    await pump
    frames_per_chunk = IN_CHUNK_BYTES // (samples_per_frame(AGENT_INPUT_RATE_HZ) * SAMPLE_BYTES)
    assert len(chunks) >= frames // frames_per_chunk - 2, len(chunks)
    return elapsed / frames * 1e6


def measure(frames: int, rounds: int) -> dict[str, float]:
    out = [asyncio.run(outbound(frames)) for _ in range(rounds)]
    inn = [asyncio.run(inbound(frames)) for _ in range(rounds)]
    return {"outbound_us": statistics.median(out), "inbound_us": statistics.median(inn)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", action="append", help="label=dir (default: this=.)")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.frames, args.rounds)))
        return
    rows = ["| code | outbound us/frame | inbound us/frame | both |", "| --- | --- | --- | --- |"]
    for label, code in (c.split("=", 1) for c in (args.code or ["this=."])):
        tree = Path(code).resolve()
        result = subprocess.run(
            [sys.executable, "-m", "bench.media_cpu", "--child",
             "--frames", str(args.frames), "--rounds", str(args.rounds)],
            cwd=tree, env={**os.environ, "PYTHONPATH": f"{tree}:{REPO_ROOT}"},
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        r = json.loads(result.stdout.strip().splitlines()[-1])
        both = r["outbound_us"] + r["inbound_us"]
        rows.append(f"| {label} | {r['outbound_us']:.0f} | {r['inbound_us']:.0f} | {both:.0f} |")
    print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.rounds} rounds")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
