"""One measured call through an impaired link: two real aiortc peers and the relay.

The caller plays `frames` 20 ms frames of a tone in real time and stops; the
receiving peer reads its audio either from aiortc's stock track or from our
`LossTolerantAudioTrack`. The result compares what the link delivered (RTP packets
the receiver accepted, by its own `getStats`) with what reached the consumer
(decoded frames, their RTP-clock `pts` and their arrival times). Used by
`tests/test_loss.py` and `bench/loss.py`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from gateway.audio.formats import PTIME_S, WEBRTC_FRAME_SAMPLES, WEBRTC_RATE_HZ
from gateway.audio.pcm import tone as tone_pcm
from gateway.loadtest.headless_caller import frames_of
from gateway.loadtest.source_track import PacedSourceTrack, add_source_track
from gateway.rtc.receive_path import LossTolerantAudioTrack, caller_audio_track
from tests.support.netem.relay import Impairment
from tests.support.netem.relay_thread import RelayThread
from tests.support.netem.sdp import route_via

RATE_HZ = WEBRTC_RATE_HZ
FRAME_SAMPLES = WEBRTC_FRAME_SAMPLES
FRAME_MS = PTIME_S * 1000
SETTLE_S = 0.3  # after the link drains: hold time (60 ms) plus decoding, with margin


class ToneTrack(PacedSourceTrack):
    """`frames` paced 20 ms frames of a 300 Hz tone at 48 kHz mono, then the end
    (`finished` is set). Send it with `add_source_track` (its payloads are Opus).

    Frame i is a tone of `freqs_hz[i % len(freqs_hz)]`, so a listener that sees only
    PCM can still tell which frames arrived (`frame_steps`)."""

    def __init__(self, frames: int, freqs_hz: tuple[float, ...] = (300.0,)) -> None:
        super().__init__(end_when_drained=True)
        pcm = b"".join(
            tone_pcm(PTIME_S, RATE_HZ, freqs_hz[i % len(freqs_hz)], 6000) for i in range(frames)
        )
        self.play_pcm(pcm)


@dataclass(slots=True)
class FrameLog:
    """What the consumer of the receiving track got: arrival time and pts per frame."""

    arrivals_s: list[float] = field(default_factory=list)
    pts: list[int] = field(default_factory=list)
    samples: int = 0
    _grew: asyncio.Event = field(default_factory=asyncio.Event)

    async def quiet(self, quiet_s: float = 0.2, timeout_s: float = 5.0) -> None:
        """Wait until no frame has come for `quiet_s`: the consumer has caught up even
        on a loaded machine (a fixed sleep raced with late packets there)."""
        async with asyncio.timeout(timeout_s):
            while True:
                self._grew.clear()
                try:
                    await asyncio.wait_for(self._grew.wait(), quiet_s)
                except TimeoutError:
                    return

    async def consume(self, track: MediaStreamTrack) -> None:
        async for frame in frames_of(track):
            self.arrivals_s.append(time.monotonic())
            self.pts.append(int(frame.pts))
            self.samples += frame.samples
            self._grew.set()


@dataclass(frozen=True, slots=True)
class LossRun:
    """The figures of one call. Ratios are of the packets the caller sent."""

    path: str
    packets_sent: int
    packets_received: int
    frames_delivered: int
    max_burst_packets: int
    max_media_step_ms: float
    max_wall_gap_ms: float
    p99_wall_gap_ms: float
    late_packets: int
    median_path_delay_ms: float
    """Relay forwarded the packet -> its frame returned by `recv()` (NaN if unmatched)."""
    p99_path_delay_ms: float
    path_delays_ms: tuple[float, ...] = field(default=(), repr=False)
    wall_gaps_ms: tuple[float, ...] = field(default=(), repr=False)

    @property
    def received_ratio(self) -> float:
        return self.packets_received / self.packets_sent

    @property
    def delivered_ratio(self) -> float:
        return self.frames_delivered / self.packets_sent

    @property
    def shortfall_pp(self) -> float:
        """Percentage points of received packets that did not become frames."""
        return 100.0 * (self.received_ratio - self.delivered_ratio)


@dataclass(frozen=True, slots=True)
class Receiving:
    """The receiving peer of a call through the relay, once it has answered."""

    answer: str
    """The SDP answer, routed back through the relay."""
    transceiver: RTCRtpTransceiver
    track: MediaStreamTrack
    """The caller's audio: our receive path (`ours`) or aiortc's stock track."""
    consumer: asyncio.Task[None]
    """Reads the track into the log until it ends."""


async def receive_through(
    relay: RelayThread,
    callee: RTCPeerConnection,
    offer_sdp: str,
    *,
    ours: bool,
    log: FrameLog,
    name: str,
) -> Receiving:
    """Apply a caller's offer routed through `relay`, consume its audio into `log`
    (through our receive path or the stock track) and answer, routed back."""
    offer, relay.caller_addr = route_via(offer_sdp, relay.gateway_side)
    tracks: list[MediaStreamTrack] = []
    callee.on("track", lambda t: tracks.append(caller_audio_track(callee, t) if ours else t))
    await callee.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    transceiver, track = callee.getTransceivers()[0], tracks[0]
    consumer = asyncio.create_task(log.consume(track), name=f"{name}/consume")
    await callee.setLocalDescription(await callee.createAnswer())
    answer, relay.gateway_addr = route_via(callee.localDescription.sdp, relay.caller_side)
    return Receiving(answer, transceiver, track, consumer)


async def run_loss_call(uplink: Impairment, *, ours: bool, frames: int = 150) -> LossRun:
    """A call of `frames` packets through `uplink` into the stock or our receive path."""
    relay = await RelayThread(uplink=uplink).start()
    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    callee = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tone = ToneTrack(frames)
    log = FrameLog()
    consumer: asyncio.Task[None] | None = None
    try:
        add_source_track(caller, tone, "sendonly")
        await caller.setLocalDescription(await caller.createOffer())
        receiving = await receive_through(
            relay, callee, caller.localDescription.sdp, ours=ours, log=log, name="loss-call"
        )
        transceiver, track, consumer = receiving.transceiver, receiving.track, receiving.consumer
        await caller.setRemoteDescription(RTCSessionDescription(receiving.answer, "answer"))
        async with asyncio.timeout(frames * FRAME_MS / 1000 + 10):
            await tone.finished.wait()
        await relay.drained()
        await asyncio.sleep(SETTLE_S)
        await log.quiet()
        received = rtp_count(await transceiver.receiver.getStats(), "inbound-rtp")
        late = track.stats.buffer.late if isinstance(track, LossTolerantAudioTrack) else 0
        return summarise("ours" if ours else "stock", relay, received, log, late)
    finally:
        await asyncio.wait_for(caller.close(), 5)
        await asyncio.wait_for(callee.close(), 5)
        if consumer is not None:
            await asyncio.wait({consumer}, timeout=2)
            consumer.cancel()
        await relay.aclose()


def rtp_count(report: object, kind: str) -> int:
    """Packets received (`inbound-rtp`) or sent (`outbound-rtp`) in a stats report."""
    stats = [s for s in report.values() if s.type == kind]  # type: ignore[attr-defined]
    field_name = "packetsReceived" if kind == "inbound-rtp" else "packetsSent"
    return sum(int(getattr(s, field_name)) for s in stats)


def summarise(
    path: str,
    relay: RelayThread,
    received: int,
    log: FrameLog,
    late: int,
    packets_sent: int | None = None,
) -> LossRun:
    """The figures of a finished call; `packets_sent` defaults to what the relay saw."""
    steps = np.diff(np.array(log.pts, dtype=np.int64)) * 1000.0 / RATE_HZ
    gaps = np.diff(np.array(log.arrivals_s)) * 1000.0
    delays = _path_delays_ms(relay, log)
    return LossRun(
        path=path,
        packets_sent=relay.uplink.rtp_seen if packets_sent is None else packets_sent,
        packets_received=received,
        frames_delivered=round(log.samples / FRAME_SAMPLES),
        max_burst_packets=relay.uplink.max_burst(),
        max_media_step_ms=float(steps.max()) if len(steps) else 0.0,
        max_wall_gap_ms=float(gaps.max()) if len(gaps) else 0.0,
        p99_wall_gap_ms=float(np.percentile(gaps, 99)) if len(gaps) else 0.0,
        late_packets=late,
        median_path_delay_ms=float(np.median(delays)) if len(delays) else float("nan"),
        p99_path_delay_ms=float(np.percentile(delays, 99)) if len(delays) else float("nan"),
        path_delays_ms=tuple(delays),
        wall_gaps_ms=tuple(float(g) for g in gaps),
    )


def _path_delays_ms(relay: RelayThread, log: FrameLog) -> list[float]:
    """How long each frame took from leaving the relay to leaving `recv()`.

    A frame's `pts` counts from the first packet the receiver decoded, which is the
    k-th packet sent for some small unknown k (earlier ones may have been lost or
    discarded). The right k maps every frame onto a forwarded packet that left the
    relay before the frame came out; holes in `pts` pin it down under loss, and the
    smallest such k is taken.
    """
    if not relay.uplink.rtp or not log.pts:
        return []
    first_ts, sent = relay.uplink.rtp[0].timestamp, relay.uplink.forwarded_at
    for k in range(25):
        delays = []
        for pts, arrival in zip(log.pts, log.arrivals_s, strict=True):
            left = sent.get((first_ts + (k * FRAME_SAMPLES) + pts) % (1 << 32))
            if left is None or left > arrival:
                break
            delays.append((arrival - left) * 1000.0)
        else:
            return delays
    return []


def frame_steps(pcm: bytes, freqs_hz: tuple[float, ...], rate_hz: int) -> np.ndarray:
    """For mono s16 PCM made of 20 ms frames of `ToneTrack(freqs_hz=...)`: how many
    frames on from the previous one each frame is (1 = the next frame, 2 = one missing).

    Each 20 ms chunk's tone is found from the spectrum of its middle 12.5 ms (away
    from codec and resampler smearing at frame edges); a step is unambiguous while
    fewer than `len(freqs_hz)` frames in a row are missing. Raises if a chunk's tone
    is not one of `freqs_hz` (the audio is not the caller's).
    """
    frame = round(rate_hz * FRAME_MS / 1000)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    chunks = samples[: len(samples) // frame * frame].reshape(-1, frame)
    lo, hi = round(frame * 0.1875), round(frame * 0.8125)
    window = chunks[:, lo:hi] * np.hanning(hi - lo)
    spectrum = np.abs(np.fft.rfft(window, n=rate_hz // 10, axis=1))  # 10 Hz bins
    peaks_hz = np.argmax(spectrum, axis=1) * 10.0
    codes = np.argmin(np.abs(peaks_hz[:, None] - np.array(freqs_hz)[None, :]), axis=1)
    off = np.abs(peaks_hz - np.array(freqs_hz)[codes])
    if len(off) and off.max() > 50:
        raise ValueError(f"a chunk's tone is {off.max():.0f} Hz off every code")
    steps: np.ndarray = np.diff(codes) % len(freqs_hz)
    steps[steps == 0] = len(freqs_hz)
    return steps
