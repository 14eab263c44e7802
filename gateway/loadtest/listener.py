"""What a load-test caller hears, measured per packet as it arrives.

A caller must cost the tester little, so aiortc's audio jitter buffer and decoder
thread are bypassed: the caller's receiver is tapped (`HeadlessCaller`'s
`packet_listener`, through the receive path's seam) and `on_packet` timestamps each
RTP packet and decodes only packets big enough to carry sound. libopus encodes digital silence in
a few bytes (3 at aiortc's settings), so most of the agent's silence costs no
decoding at all; an audible packet costs one mono decode (~28 µs here).

Measured here: inter-arrival gaps (> 40 ms between consecutive packets), sequence
numbers missing, and transitions between agent silence and agent audio (RMS of the
decoded 20 ms frame against a threshold). Imports aiortc, PyAV, numpy.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable

import av
import numpy as np
from aiortc.rtp import RtpPacket
from av.audio.codeccontext import AudioCodecContext

from gateway.audio.formats import WEBRTC_RATE_HZ

#: Consecutive packets further apart than this are a gap (two 20 ms frame times).
GAP_S = 0.040
#: Opus payloads this small carry no audible signal (libopus silence frames are
#: 1-3 bytes; 5 bytes in 20 ms is 2 kbit/s): counted silent without decoding.
SILENT_PAYLOAD_BYTES = 5
#: Agent audio ends after this many silent packets in a row (60 ms); the end is
#: dated at the first of them. A single quiet frame inside speech is not an end.
SILENT_PACKETS_TO_END = 3
DEFAULT_ENERGY_THRESHOLD = 200.0
#: Gaps whose time and length are kept per call (all are counted).
MAX_GAPS_KEPT = 5_000
#: A sequence jump larger than this is a new stream, not loss.
MAX_SEQUENCE_JUMP = 1000


class AgentAudioMonitor:
    """Counts gaps and finds when agent audio starts and stops, packet by packet."""

    def __init__(
        self,
        energy_threshold: float = DEFAULT_ENERGY_THRESHOLD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold_sq = energy_threshold**2
        self._clock = clock
        self._decoder: AudioCodecContext | None = None
        self._last_at: float | None = None
        self._last_seq: int | None = None
        self._silent_run = 0
        self._silent_since = 0.0
        self._changed = asyncio.Event()
        self.first_packet_at: float | None = None
        self.packets = 0
        self.decoded = 0
        self.intervals = 0
        self.gaps = 0
        self.max_gap_s = 0.0
        self.lost = 0
        self.gap_windows: list[tuple[float, float]] = []
        """(arrival of the packet before the gap, arrival of the one after) per gap."""
        self.audible = False
        self.onsets: list[float] = []
        """Times agent audio started (first audible packet after silence)."""
        self.silences: list[float] = []
        """Times agent audio stopped (first of `SILENT_PACKETS_TO_END` silent packets)."""

    def on_packet(self, packet: RtpPacket) -> None:
        now = self._clock()
        self.packets += 1
        if self._last_at is None:
            self.first_packet_at = now
            self._changed.set()
        else:
            interval = now - self._last_at
            self.intervals += 1
            if interval > GAP_S:
                self.gaps += 1
                self.max_gap_s = max(self.max_gap_s, interval)
                if len(self.gap_windows) < MAX_GAPS_KEPT:
                    self.gap_windows.append((self._last_at, now))
        self._last_at = now
        if self._last_seq is not None:
            jump = (packet.sequence_number - self._last_seq) % 65536
            if 1 < jump < MAX_SEQUENCE_JUMP:
                self.lost += jump - 1
        self._last_seq = packet.sequence_number
        if self._is_audible(packet.payload):
            self._silent_run = 0
            if not self.audible:
                self.audible = True
                self.onsets.append(now)
                self._changed.set()
        elif self.audible:
            if self._silent_run == 0:
                self._silent_since = now
            self._silent_run += 1
            if self._silent_run >= SILENT_PACKETS_TO_END:
                self.audible = False
                self.silences.append(self._silent_since)
                self._changed.set()

    def _is_audible(self, payload: bytes) -> bool:
        if len(payload) <= SILENT_PAYLOAD_BYTES:
            return False
        if self._decoder is None:
            self._decoder = av.CodecContext.create("libopus", "r")
            self._decoder.format = "s16"
            self._decoder.layout = "mono"
            self._decoder.sample_rate = WEBRTC_RATE_HZ
        try:
            frames = self._decoder.decode(av.Packet(payload))
        except av.FFmpegError:
            return False
        self.decoded += 1
        for frame in frames:
            samples = np.frombuffer(memoryview(frame.planes[0]), dtype="<i2")[: frame.samples]
            if len(samples):
                energy = float(np.dot(samples, samples.astype(np.float64))) / len(samples)
                if energy >= self._threshold_sq:
                    return True
        return False

    async def wait_first_packet(self, limit_s: float) -> float | None:
        return await self._wait(lambda: self.first_packet_at, limit_s)

    async def wait_onset(self, after: float, limit_s: float) -> float | None:
        """The first time agent audio started at or after `after`; None after `limit_s`."""
        return await self._wait(lambda: _first_at_or_after(self.onsets, after), limit_s)

    async def wait_silence(self, after: float, limit_s: float) -> float | None:
        """The first time agent audio stopped at or after `after`; None after `limit_s`."""
        return await self._wait(lambda: _first_at_or_after(self.silences, after), limit_s)

    async def _wait(self, found: Callable[[], float | None], limit_s: float) -> float | None:
        try:
            async with asyncio.timeout(limit_s):
                while (value := found()) is None:
                    self._changed.clear()
                    await self._changed.wait()
                return value
        except TimeoutError:
            return None


def _first_at_or_after(times: list[float], after: float) -> float | None:
    index = bisect.bisect_left(times, after)  # times only grow: the list is sorted
    return times[index] if index < len(times) else None
