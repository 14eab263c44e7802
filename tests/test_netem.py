"""The netem harness itself: the relay (with plain UDP sockets) and frame stepping.

Pins down: the relay forwards both ways between the two real addresses; with a seed
the same packets are dropped on every run; delays stay within delay +/- jitter; a
blackout drops everything in its window; non-RTP datagrams pass untouched; closing
cancels what is in flight and frees both sockets. `frame_steps` finds exactly which
frequency-coded frames are missing from PCM, and refuses audio that is not coded.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tests.support.netem.loss_call import frame_steps
from tests.support.netem.relay import Impairment, UdpRelay, is_rtp


class Endpoint(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[bytes, float]] = []
        self.arrived = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append((data, time.monotonic()))
        self.arrived.set()


def rtp(seq: int, ts_step: int = 96) -> bytes:
    """An RTP-shaped datagram; timestamps 2 ms apart on a 48 kHz clock by default."""
    header = bytes([0x80, 111]) + seq.to_bytes(2, "big") + (seq * ts_step).to_bytes(4, "big")
    return header + bytes(4) + b"payload"


async def relay_run(
    link: Impairment, packets: int, gap_s: float = 0.002
) -> tuple[UdpRelay, Endpoint, list[float]]:
    loop = asyncio.get_running_loop()
    relay = await UdpRelay(uplink=link).start()
    a_transport, _ = await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
    b_transport, b = await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
    try:
        relay.gateway_addr = b_transport.get_extra_info("sockname")[:2]
        sent_at = []
        for seq in range(packets):
            sent_at.append(time.monotonic())
            a_transport.sendto(rtp(seq, round(gap_s * 48_000)), relay.caller_side)
            await asyncio.sleep(gap_s)
        await relay.drained()
        await asyncio.sleep(0.05)
        return relay, b, sent_at
    finally:
        a_transport.close()
        b_transport.close()
        await relay.aclose()


def test_rtp_is_told_from_rtcp_stun_and_dtls() -> None:
    assert is_rtp(rtp(1))
    assert not is_rtp(bytes([0x80, 200]) + bytes(10))  # RTCP sender report
    assert not is_rtp(bytes([0x00, 0x01]) + bytes(18))  # STUN binding request
    assert not is_rtp(bytes([22, 0xFE, 0xFD]) + bytes(10))  # DTLS handshake


async def test_loss_is_seeded_and_repeatable() -> None:
    link = Impairment(loss=0.2, seed=7)
    first, b1, _ = await relay_run(link, 200)
    second, b2, _ = await relay_run(link, 200)
    dropped = [r.sequence_number for r in first.uplink.rtp if r.dropped]
    assert dropped == [r.sequence_number for r in second.uplink.rtp if r.dropped]
    assert 20 <= len(dropped) <= 60
    got = sorted(int.from_bytes(d[2:4], "big") for d, _ in b1.got)
    assert got == sorted(set(range(200)) - set(dropped))
    assert len(b2.got) == 200 - len(dropped)


async def test_delay_counts_from_each_packets_media_time_and_reorders() -> None:
    """Each packet leaves delay +/- jitter after its due time (first packet's arrival
    plus its RTP timestamp offset), never before it came in; packets reorder."""
    gap, delay, jitter = 0.02, 0.1, 0.05
    # A delay well above the sender's lateness on a busy machine (a packet that comes
    # in after its due time leaves at once, in arrival order).
    link = Impairment(delay_s=delay, jitter_s=jitter)
    _, b, sent_at = await relay_run(link, 50, gap_s=gap)
    assert len(b.got) == 50
    for data, at in b.got:
        seq = int.from_bytes(data[2:4], "big")
        due = sent_at[0] + seq * gap
        assert at >= max(due + delay - jitter - 0.001, sent_at[seq])
        assert at <= max(due + delay + jitter, sent_at[seq]) + 0.04  # slack for a loaded machine
    order = [int.from_bytes(d[2:4], "big") for d, _ in b.got]
    assert order != sorted(order), "independent delays should reorder some packets"


async def test_a_blackout_drops_everything_in_its_window() -> None:
    relay, _, _ = await relay_run(Impairment(blackouts=((0.05, 0.05),)), 100, gap_s=0.002)
    records = relay.uplink.rtp
    inside = [r for r in records if 0.05 <= r.seen_s < 0.10]
    assert inside
    assert all(r.dropped for r in inside)
    assert not any(r.dropped for r in records if r not in inside)
    assert relay.uplink.max_burst() == len(inside)


async def test_non_rtp_passes_and_the_reverse_direction_works() -> None:
    loop = asyncio.get_running_loop()
    relay = await UdpRelay(uplink=Impairment(loss=1.0)).start()
    a_transport, a = await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
    b_transport, b = await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
    try:
        relay.gateway_addr = b_transport.get_extra_info("sockname")[:2]
        a_transport.sendto(b"\x00\x01stun-ish", relay.caller_side)
        a_transport.sendto(rtp(1), relay.caller_side)  # lost: loss=1.0
        await asyncio.wait_for(b.arrived.wait(), 2)
        b_transport.sendto(b"reply", relay.gateway_side)
        await asyncio.wait_for(a.arrived.wait(), 2)
        assert [d for d, _ in b.got] == [b"\x00\x01stun-ish"]
        assert [d for d, _ in a.got] == [b"reply"]
        assert relay.uplink.rtp_dropped == 1
    finally:
        a_transport.close()
        b_transport.close()
        await relay.aclose()


def test_an_impossible_impairment_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        Impairment(delay_s=0.01, jitter_s=0.02)


def test_frame_steps_finds_the_missing_frames_in_coded_pcm() -> None:
    codes = (400.0, 600.0, 800.0, 1000.0, 1200.0)
    t = np.arange(320) / 16_000
    kept = [i for i in range(20) if i not in (5, 9, 10)]
    pcm = np.concatenate([6000 * np.sin(2 * np.pi * codes[i % 5] * t) for i in kept])
    steps = frame_steps(pcm.astype("<i2").tobytes(), codes, 16_000)
    assert steps.tolist() == [1, 1, 1, 1, 2, 1, 1, 3] + [1] * 8
    noise = np.random.default_rng(1).normal(0, 3000, 3200).astype("<i2").tobytes()
    with pytest.raises(ValueError, match="off every code"):
        frame_steps(noise, codes, 16_000)
