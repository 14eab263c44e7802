"""CPU per received audio packet: aiortc's stock receive path vs ours.

One real `RTCRtpReceiver` (started with the public `receive()`), fed real Opus RTP
packets through its packet handler as fast as the consumer takes the frames, once
with the stock track (jitter buffer, a decoder thread per receiver, a thread hop per
frame) and once with `gateway.rtc.receive_path` (reorder buffer, decoding in the event
loop when the consumer asks). CPU is process time, all threads included.

    python -m bench.receive_cpu --packets 5000

Benchmark only: it calls the receiver's private packet handler (through the seam,
`gateway.rtc._aiortc.inject_rtp_packet`) to inject
packets, which no test or gateway code does.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import time

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.opus import OpusEncoder
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters
from aiortc.rtp import RtpPacket

from gateway.audio.formats import WEBRTC_FRAME_SAMPLES, WEBRTC_RATE_HZ
from gateway.rtc import _aiortc, ice
from gateway.rtc.receive_path import caller_audio_track, remote_codecs


def opus_payloads(count: int) -> list[bytes]:
    encoder = OpusEncoder()
    t = np.arange(WEBRTC_FRAME_SAMPLES) / WEBRTC_RATE_HZ
    payloads = []
    for i in range(count):
        pcm = (6000 * np.sin(2 * np.pi * (300 + i % 7 * 50) * t)).astype("<i2")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = WEBRTC_RATE_HZ, i * WEBRTC_FRAME_SAMPLES
        frame.time_base = fractions.Fraction(1, WEBRTC_RATE_HZ)
        payloads.append(encoder.encode(frame)[0][0])
    return payloads


async def run(ours: bool, payloads: list[bytes]) -> tuple[float, float]:
    """(CPU µs per packet, wall µs per packet) for one path."""
    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    callee = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tracks: list[MediaStreamTrack] = []
    callee.on("track", lambda t: tracks.append(caller_audio_track(callee, t) if ours else t))
    try:
        caller.addTransceiver("audio", direction="sendonly")
        await caller.setLocalDescription(await caller.createOffer())
        offer = RTCSessionDescription(caller.localDescription.sdp, "offer")
        await callee.setRemoteDescription(offer)
        transceiver = callee.getTransceivers()[0]
        codecs = [c for c in remote_codecs(callee, transceiver) if c.name.lower() == "opus"]
        receiver = transceiver.receiver
        await receiver.receive(RTCRtpReceiveParameters(codecs=codecs))
        pt = codecs[0].payloadType
        assert pt is not None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for seq, payload in enumerate(payloads):
            packet = RtpPacket(
                payload_type=pt,
                sequence_number=seq % 65536,
                timestamp=seq * WEBRTC_FRAME_SAMPLES,
                ssrc=1234,
                payload=payload,
            )
            await _aiortc.inject_rtp_packet(receiver, packet, arrival_ms=seq * 20)
            if seq >= 5:  # stock holds back 4-5 packets; take one frame per packet after
                await asyncio.wait_for(tracks[0].recv(), 5)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        n = len(payloads) - 5
        return cpu / n * 1e6, wall / n * 1e6
    finally:
        await caller.close()
        await callee.close()


async def main(packets: int, rounds: int) -> None:
    payloads = opus_payloads(packets)
    results: dict[str, list[tuple[float, float]]] = {"stock": [], "ours": []}
    for _ in range(rounds):
        for path in results:
            results[path].append(await run(path == "ours", payloads))
    print(f"| path | CPU per packet (median of {rounds}) | wall per packet |")
    print("|---|---:|---:|")
    for path, values in results.items():
        cpu = float(np.median([v[0] for v in values]))
        wall = float(np.median([v[1] for v in values]))
        print(f"| {path} | {cpu:.0f} µs | {wall:.0f} µs |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ice.restrict_host_addresses(["127.0.0.1"])
    asyncio.run(main(args.packets, args.rounds))
