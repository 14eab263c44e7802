"""A userspace UDP relay on loopback that impairs a WebRTC link: loss, delay, jitter,
blackouts, all from a seeded random generator so a run can be repeated exactly.

The kernel here has no netem. Two aiortc peers are made to talk through the relay by
rewriting the one loopback host candidate in each SDP (`tests/support/netem/sdp.py`):

    caller  <->  [caller_side socket | relay | gateway_side socket]  <->  gateway

The caller sends to `caller_side`; the relay forwards from `gateway_side` to the
gateway's real address, and back. Each side only ever sees the relay's address, the
same one its peer's SDP advertised, so ICE pairs form as usual (no peer-reflexive
tricks). By default only RTP media is impaired (RFC 7983 demultiplexing: first byte
128-191, not RTCP): ICE, DTLS and RTCP pass at once, so the call still connects
quickly and the media statistics are about media.

Bounded: at most `MAX_PENDING` datagrams wait in delay timers (more are dropped and
counted), the relay closes itself after `max_lifetime_s`, and `aclose()` cancels every
pending timer and closes both sockets. Traffic goes only to 127.0.0.1 (or to the
`host` given, an address in a namespace the test created).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from gateway.audio.formats import WEBRTC_RATE_HZ

LOOPBACK = "127.0.0.1"
MAX_PENDING = 2048
RTP_CLOCK_HZ = WEBRTC_RATE_HZ
Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Impairment:
    """What one direction of the link does to RTP packets."""

    loss: float = 0.0
    """Probability that a packet is dropped, independently per packet."""
    delay_s: float = 0.0
    """Mean one-way delay added to every forwarded packet."""
    jitter_s: float = 0.0
    """Delay is uniform in [delay_s - jitter_s, delay_s + jitter_s]; packets reorder."""
    blackouts: tuple[tuple[float, float], ...] = ()
    """(start_s, duration_s) windows, from the first RTP packet, where all RTP is lost."""
    seed: int = 0
    """Seed of this direction's random generator (loss draws and delays)."""
    rtp_only: bool = True
    """Leave ICE, DTLS and RTCP alone (forwarded at once, never dropped)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0 or self.jitter_s > self.delay_s or self.delay_s < 0:
            raise ValueError("need 0 <= loss <= 1 and 0 <= jitter_s <= delay_s")


@dataclass(frozen=True, slots=True)
class RtpRecord:
    """One RTP packet the relay saw: when (relay clock, s since its first), and fate."""

    sequence_number: int
    timestamp: int
    seen_s: float
    dropped: bool


@dataclass(slots=True)
class DirectionLog:
    """Everything one direction did; RTP only."""

    rtp: list[RtpRecord] = field(default_factory=list)
    forwarded_at: dict[int, float] = field(default_factory=dict)
    """RTP timestamp -> `time.monotonic()` when the packet left the relay."""
    other_forwarded: int = 0
    overflow_dropped: int = 0

    @property
    def rtp_seen(self) -> int:
        return len(self.rtp)

    @property
    def rtp_forwarded(self) -> int:
        return sum(1 for r in self.rtp if not r.dropped)

    @property
    def rtp_dropped(self) -> int:
        return sum(1 for r in self.rtp if r.dropped)

    def max_burst(self) -> int:
        """Longest run of consecutive sequence numbers that were not forwarded: dropped
        here, or lost before reaching the relay (kernel loss in `netns.py`)."""
        unwrapped = unwrap_sequence_numbers([r.sequence_number for r in self.rtp])
        forwarded = sorted(seq for seq, r in zip(unwrapped, self.rtp, strict=True) if not r.dropped)
        return max((b - a - 1 for a, b in itertools.pairwise(forwarded)), default=0)


def is_rtp(data: bytes) -> bool:
    """RTP, not RTCP, by RFC 7983 first byte and RFC 5761 payload type ranges."""
    return len(data) >= 12 and 128 <= data[0] <= 191 and not 64 <= (data[1] & 0x7F) <= 95


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay, name: str) -> None:
        self._relay = relay
        self._name = name

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self._relay._received(self._name, data, addr)


class UdpRelay:
    """Two loopback sockets and a seeded impairment per direction."""

    def __init__(
        self,
        uplink: Impairment = Impairment(),
        downlink: Impairment = Impairment(),
        max_lifetime_s: float = 120.0,
        host: str = LOOPBACK,
    ) -> None:
        self._host = host
        self._impair = {"caller": uplink, "gateway": downlink}
        self._random = {
            "caller": random.Random(uplink.seed),
            "gateway": random.Random(downlink.seed),
        }
        self.logs = {"caller": DirectionLog(), "gateway": DirectionLog()}
        self._transports: dict[str, asyncio.DatagramTransport] = {}
        self.caller_addr: Addr | None = None  # learned from the caller's offer
        self.gateway_addr: Addr | None = None  # learned from the gateway's answer
        self._pending: set[asyncio.TimerHandle] = set()
        self._idle = asyncio.Event()  # set whenever nothing is in flight
        self._idle.set()
        self.idle = threading.Event()  # the same, for another thread (`RelayThread`)
        self.idle.set()
        self._anchor: dict[str, tuple[float, int]] = {}  # first RTP: (time, timestamp)
        self._max_lifetime_s = max_lifetime_s
        self._lifetime: asyncio.TimerHandle | None = None

    @property
    def uplink(self) -> DirectionLog:
        """What the caller sent towards the gateway."""
        return self.logs["caller"]

    @property
    def caller_side(self) -> Addr:
        """Where the caller sends: advertised to the caller as the gateway's address."""
        return self._local("caller")

    @property
    def gateway_side(self) -> Addr:
        """Where the gateway sends: advertised to the gateway as the caller's address."""
        return self._local("gateway")

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self) -> UdpRelay:
        loop = asyncio.get_running_loop()
        for name in ("caller", "gateway"):
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_Side, self, name), local_addr=(self._host, 0)
            )
            self._transports[name] = transport
        self._lifetime = loop.call_later(self._max_lifetime_s, self.close)
        return self

    def close(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        self._idle.set()
        self.idle.set()
        for transport in self._transports.values():
            transport.close()
        if self._lifetime is not None:
            self._lifetime.cancel()

    async def aclose(self) -> None:
        self.close()
        await asyncio.sleep(0)  # let the transports run their connection_lost

    async def drained(self, timeout_s: float = 2.0) -> None:
        """Wait until no delayed datagram is still in flight."""
        async with asyncio.timeout(timeout_s):
            await self._idle.wait()

    def _local(self, name: str) -> Addr:
        host, port = self._transports[name].get_extra_info("sockname")[:2]
        return str(host), int(port)

    def _received(self, side: str, data: bytes, addr: Addr) -> None:
        if side == "caller":
            self.caller_addr = self.caller_addr or addr
            out, target = "gateway", self.gateway_addr
        else:
            self.gateway_addr = self.gateway_addr or addr
            out, target = "caller", self.caller_addr
        if target is None or out not in self._transports:
            return
        impairment, log = self._impair[side], self.logs[side]
        if impairment.rtp_only and not is_rtp(data):
            log.other_forwarded += 1
            self._transports[out].sendto(data, target)
            return
        self._impair_and_forward(side, data, out, target)

    def _impair_and_forward(self, side: str, data: bytes, out: str, target: Addr) -> None:
        loop = asyncio.get_running_loop()
        impairment, log, rng = self._impair[side], self.logs[side], self._random[side]
        now = loop.time()
        rtp = is_rtp(data)
        seq = int.from_bytes(data[2:4], "big") if rtp else -1
        timestamp = int.from_bytes(data[4:8], "big") if rtp else -1
        due = self._due_s(side, timestamp, now) if rtp else now
        seen_s = due - self._anchor[side][0] if rtp else 0.0
        lost = rng.random() < impairment.loss
        delay = impairment.delay_s + rng.uniform(-impairment.jitter_s, impairment.jitter_s)
        blackout = any(s <= seen_s < s + d for s, d in impairment.blackouts)
        overflow = len(self._pending) >= MAX_PENDING
        log.overflow_dropped += overflow
        log.rtp.append(RtpRecord(seq, timestamp, seen_s, lost or blackout or overflow))
        if lost or blackout or overflow:
            return
        handle: asyncio.TimerHandle | None = None

        def send() -> None:
            self._pending.discard(handle)
            transport = self._transports[out]
            if not transport.is_closing():
                log.forwarded_at[timestamp] = time.monotonic()
                transport.sendto(data, target)
            if not self._pending:
                self._idle.set()
                self.idle.set()

        handle = loop.call_at(max(now, due + delay), send)
        self._pending.add(handle)
        self._idle.clear()
        self.idle.clear()

    def _due_s(self, side: str, timestamp: int, now: float) -> float:
        """When an RTP packet should have reached the relay, by its media clock.

        Delays count from there, not from when this relay read the packet: if the
        relay's loop was late, packets it reads in one batch must not be reordered
        deeper than the jitter allows (a real link delays each packet from its own
        send time). Timestamps are on Opus's 48 kHz clock, from the first packet.
        """
        if side not in self._anchor:
            self._anchor[side] = (now, timestamp)
        anchor_s, anchor_ts = self._anchor[side]
        offset = ((timestamp - anchor_ts) % (1 << 32)) / RTP_CLOCK_HZ
        return anchor_s + offset


def unwrap_sequence_numbers(seqs: list[int]) -> Iterator[int]:
    """16-bit sequence numbers made monotonic across wraparound (for long runs)."""
    base, previous = 0, None
    for seq in seqs:
        if previous is not None and seq < previous - 32768:
            base += 65536
        previous = seq
        yield base + seq
