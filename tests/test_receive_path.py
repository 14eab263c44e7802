"""Our receive path for caller audio.

Pins down:
- the reorder buffer releases in order at once; skips a hole once more than 3 packets
  wait behind it, or when nothing arrives for `max_hold_s`, but never on elapsed time
  alone while packets arrive (a stalled loop); drops late packets and duplicates
  (counted); survives sequence and timestamp wraparound; restarts on big jumps;
- the seam in aiortc still exists and has the shape we rely on (fails when aiortc
  changes under us), and installing refuses clearly when it is gone;
- packets held behind a hole come out after `max_hold_s` even if no packet follows
  (the end of a talk spurt), and stopping wakes a waiting `recv()`; a hold timer that
  fires late (stalled loop) gives a missing packet a grace period instead of skipping;
- over a real loopback call every packet becomes exactly one 48 kHz mono frame of the
  tone, with `pts` advancing 20 ms per frame, the stock decoder stays idle, and the track ends
  when the peer connection closes.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import random
import time

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.codecs.opus import OpusEncoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import RtpPacket

from gateway.loadtest.source_track import add_source_track
from gateway.rtc._aiortc import JITTER_BUFFER_ATTR
from gateway.rtc.receive_path import (
    LossTolerantAudioTrack,
    ReceivePathUnavailable,
    caller_audio_track,
    install_receive_path,
)
from gateway.rtc.reorder_buffer import BufferedPacket, ReleasedPacket, ReorderBuffer
from tests.support.netem.loss_call import FRAME_SAMPLES, ToneTrack
from tests.support.peers import PeerPair


def pkt(seq: int, ts: int | None = None) -> BufferedPacket:
    seq %= 1 << 16
    timestamp = (seq * FRAME_SAMPLES if ts is None else ts) % (1 << 32)
    return BufferedPacket(seq, timestamp, 111, bytes([seq % 256]))


def seqs(released: list[ReleasedPacket]) -> list[int]:
    return [r.packet.sequence_number for r in released]


def test_in_order_packets_leave_at_once_after_the_first_has_a_successor() -> None:
    buffer = ReorderBuffer(max_hold_s=0.06)
    assert buffer.push(pkt(10), 0.00) == []  # the first waits for its successor
    assert seqs(buffer.push(pkt(11), 0.02)) == [10, 11]
    assert seqs(buffer.push(pkt(12), 0.04)) == [12]
    assert buffer.deadline_s() is None


def test_a_packet_reordered_before_the_first_release_becomes_the_start() -> None:
    buffer = ReorderBuffer()
    assert buffer.push(pkt(11), 0.00) == []
    assert seqs(buffer.push(pkt(10), 0.01)) == [10, 11]
    assert buffer.stats.late == 0


def test_reordered_packets_come_out_in_order_without_loss() -> None:
    buffer = ReorderBuffer(max_hold_s=0.06)
    out: list[int] = []
    for i, seq in enumerate([1, 2, 4, 3, 6, 5, 7]):
        out += seqs(buffer.push(pkt(seq), i * 0.02))
    assert out == [1, 2, 3, 4, 5, 6, 7]
    assert buffer.stats.skipped == 0


def test_a_hole_is_skipped_once_more_than_three_packets_wait_behind_it() -> None:
    buffer = ReorderBuffer(max_hold_s=0.06, max_reorder_packets=3)
    buffer.push(pkt(1), 0.00)
    buffer.push(pkt(2), 0.02)
    assert buffer.push(pkt(4), 0.06) == []  # 3 is missing
    assert buffer.push(pkt(5), 0.08) == []
    assert buffer.push(pkt(6), 0.10) == []
    released = buffer.push(pkt(7), 0.12)
    assert seqs(released) == [4, 5, 6, 7]
    assert [r.media_timestamp for r in released] == [i * FRAME_SAMPLES for i in (3, 4, 5, 6)]
    assert buffer.push(pkt(3), 0.13) == []
    stats = buffer.stats
    assert (stats.skipped, stats.late, stats.released, stats.held) == (1, 1, 6, 0)


def test_elapsed_time_alone_does_not_skip_while_packets_arrive() -> None:
    """A stalled event loop delivers packets late but in order: no premature skip."""
    buffer = ReorderBuffer(max_hold_s=0.06, max_reorder_packets=3)
    buffer.push(pkt(1), 0.00)
    buffer.push(pkt(2), 0.02)
    assert buffer.push(pkt(4), 0.04) == []
    assert buffer.push(pkt(5), 0.50) == []  # after a 460 ms stall, 3 is in the burst
    assert seqs(buffer.push(pkt(3), 0.50)) == [3, 4, 5]
    assert buffer.stats.late == buffer.stats.skipped == 0


def test_held_packets_are_released_when_nothing_arrives_for_max_hold() -> None:
    buffer = ReorderBuffer(max_hold_s=0.06)
    buffer.push(pkt(1), 0.00)
    buffer.push(pkt(2), 0.02)
    buffer.push(pkt(4), 0.06)  # 3 is missing, and 4 and 5 end the talk spurt
    buffer.push(pkt(5), 0.08)
    assert buffer.deadline_s() == pytest.approx(0.14)
    assert buffer.expire(0.139) == []
    assert seqs(buffer.expire(0.14)) == [4, 5]
    assert buffer.deadline_s() is None
    assert buffer.stats.skipped == 1


def test_a_first_packet_whose_successor_is_lost_goes_out_with_the_later_ones() -> None:
    buffer = ReorderBuffer(max_reorder_packets=3)
    out: list[int] = []
    for seq in (10, 12, 13, 14, 15):  # 11 is lost
        out += seqs(buffer.push(pkt(seq), 0.0))
    assert out == [10, 12, 13, 14, 15]
    assert buffer.stats.skipped == 1


def test_a_first_packet_with_no_successor_is_released_when_nothing_follows() -> None:
    buffer = ReorderBuffer(max_hold_s=0.06)
    assert buffer.push(pkt(7), 0.0) == []
    assert seqs(buffer.expire(0.06)) == [7]


def test_copies_of_released_or_held_packets_are_dropped_and_counted() -> None:
    buffer = ReorderBuffer()
    out: list[int] = []
    for i, seq in enumerate([1, 2, 2, 3, 1, 5, 5]):
        out += seqs(buffer.push(pkt(seq), i * 0.001))
    assert out == [1, 2, 3]
    stats = buffer.stats
    assert (stats.late, stats.duplicate, stats.held) == (2, 1, 1)  # late: 2 and 1 again
    assert stats.released + stats.late + stats.duplicate + stats.held == stats.received


def test_sequence_and_timestamp_wraparound_keep_order_and_media_time() -> None:
    buffer = ReorderBuffer()
    first_ts = (1 << 32) - 2 * FRAME_SAMPLES
    out: list[ReleasedPacket] = []
    for i, seq in enumerate([65534, 65535, 1, 0, 2]):
        ts = (first_ts + ((seq - 65534) % (1 << 16)) * FRAME_SAMPLES) % (1 << 32)
        out += buffer.push(pkt(seq, ts), i * 0.02)
    assert seqs(out) == [65534, 65535, 0, 1, 2]
    assert [r.media_timestamp for r in out] == [i * FRAME_SAMPLES for i in range(5)]


def test_a_huge_jump_is_a_restart_not_thousands_of_losses() -> None:
    buffer = ReorderBuffer(max_hold_s=0.06)
    buffer.push(pkt(100), 0.00)
    buffer.push(pkt(101), 0.02)
    buffer.push(pkt(103), 0.04)  # held behind 102
    out = seqs(buffer.push(pkt(30000), 0.06))
    out += seqs(buffer.push(pkt(30001), 0.08))
    assert out == [103, 30000, 30001]
    assert (buffer.stats.restarts, buffer.stats.skipped) == (1, 0)


def test_any_arrival_pattern_keeps_order_counts_and_bounds() -> None:
    """Seeded fuzz (a hostile caller picks any sequence numbers): never a hang, output
    strictly in order between restarts, every packet accounted for, at most
    `max_reorder_packets` + 1 held, and nothing left once the hold expires."""
    rng = random.Random(5)
    for _ in range(300):
        buffer, now, out = ReorderBuffer(max_hold_s=0.06), 0.0, list[int]()
        base = rng.randrange(1 << 16)
        for _ in range(rng.randrange(1, 60)):
            now += rng.choice((0.0, 0.02, 0.1))
            seq = base + rng.choice((0, 1, 2, 3, 5, -1, -3, 150, 40000)) + len(out)
            out += seqs(buffer.push(pkt(seq), now))
            if rng.random() < 0.2:
                out += seqs(buffer.expire(now + rng.choice((0.01, 0.07))))
            assert buffer.stats.held <= 4
        out += seqs(buffer.expire(now + 1.0))
        stats = buffer.stats
        assert stats.held == 0
        assert stats.released + stats.late + stats.duplicate == stats.received
        assert len(out) == stats.released
        steps = [(b - a) % (1 << 16) for a, b in itertools.pairwise(out)]
        assert stats.restarts > 0 or all(0 < step < 1 << 15 for step in steps)


async def test_installing_refuses_clearly_when_the_seam_is_gone(peers: PeerPair) -> None:
    caller, callee = peers
    caller.addTransceiver("audio", direction="sendonly")
    await caller.setLocalDescription(await caller.createOffer())
    offer = RTCSessionDescription(caller.localDescription.sdp, "offer")
    await callee.setRemoteDescription(offer)
    receiver = callee.getTransceivers()[0].receiver
    assert isinstance(getattr(receiver, JITTER_BUFFER_ATTR), JitterBuffer)
    delattr(receiver, JITTER_BUFFER_ATTR)  # what a changed aiortc would look like
    with pytest.raises(ReceivePathUnavailable):
        install_receive_path(receiver, [])


async def test_a_clean_call_turns_every_packet_into_one_frame_of_the_tone(peers: PeerPair) -> None:
    frames = 50
    caller, callee = peers
    tone = ToneTrack(frames)
    add_source_track(caller, tone, "sendonly")
    await caller.setLocalDescription(await caller.createOffer())
    offer = RTCSessionDescription(caller.localDescription.sdp, "offer")
    tracks: list[MediaStreamTrack] = []
    callee.on("track", lambda t: tracks.append(caller_audio_track(callee, t)))
    await callee.setRemoteDescription(offer)
    transceiver, track = callee.getTransceivers()[0], tracks[0]
    assert isinstance(track, LossTolerantAudioTrack)
    await callee.setLocalDescription(await callee.createAnswer())
    answer = RTCSessionDescription(callee.localDescription.sdp, "answer")
    await caller.setRemoteDescription(answer)
    received: list[av.AudioFrame] = []
    async with asyncio.timeout(10):
        while len(received) < frames:
            frame = await track.recv()
            assert isinstance(frame, av.AudioFrame)
            received.append(frame)
    stats = (await transceiver.receiver.getStats()).values()
    inbound = [s for s in stats if s.type == "inbound-rtp"]
    assert inbound[0].packetsReceived == frames
    assert [f.pts for f in received] == [i * FRAME_SAMPLES for i in range(frames)]
    # Decoded straight to mono (the caller's voice; half the work downstream).
    assert {(f.layout.name, f.sample_rate, f.samples) for f in received} == {
        ("mono", 48_000, FRAME_SAMPLES)
    }
    pcm = np.concatenate([f.to_ndarray().ravel() for f in received[5:]]).astype(float)
    assert np.sqrt(np.mean(pcm**2)) > 2000  # the 6000-peak tone, not silence
    assert track.stats.frames_out == frames
    assert track.stats.stock_decoded == 0
    assert track.stats.buffer.skipped == track.stats.buffer.late == 0
    await asyncio.wait_for(callee.close(), 5)
    with pytest.raises(MediaStreamError):
        async with asyncio.timeout(5):
            await track.recv()


async def test_a_call_that_never_connects_ends_the_track_when_the_connection_closes(
    peers: PeerPair,
) -> None:
    caller, callee = peers
    caller.addTransceiver("audio", direction="sendonly")
    await caller.setLocalDescription(await caller.createOffer())
    tracks: list[MediaStreamTrack] = []
    callee.on("track", lambda t: tracks.append(caller_audio_track(callee, t)))
    offer = RTCSessionDescription(caller.localDescription.sdp, "offer")
    await callee.setRemoteDescription(offer)
    waiting = asyncio.create_task(tracks[0].recv(), name="test/recv")
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await asyncio.wait_for(callee.close(), 5)
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, 2)
    await asyncio.sleep(0)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("receive-path/")]


async def test_the_stock_track_is_kept_when_the_seam_is_gone(peers: PeerPair) -> None:
    caller, callee = peers
    caller.addTransceiver("audio", direction="sendonly")
    await caller.setLocalDescription(await caller.createOffer())
    chosen: list[MediaStreamTrack] = []

    def on_track(track: MediaStreamTrack) -> None:
        receiver = callee.getTransceivers()[0].receiver
        delattr(receiver, JITTER_BUFFER_ATTR)  # what a changed aiortc would look like
        chosen.append(caller_audio_track(callee, track))
        chosen.append(track)

    callee.on("track", on_track)
    offer = RTCSessionDescription(caller.localDescription.sdp, "offer")
    await callee.setRemoteDescription(offer)
    assert chosen[0] is chosen[1]


def opus_packets(count: int) -> list[RtpPacket]:
    """Real Opus RTP packets of a tone, from aiortc's own encoder."""
    encoder, packets = OpusEncoder(), []
    t = np.arange(FRAME_SAMPLES) / 48_000
    pcm = (6000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").reshape(1, -1)
    for seq in range(count):
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = 48_000
        frame.pts = seq * FRAME_SAMPLES
        frame.time_base = fractions.Fraction(1, 48_000)
        payloads, _ = encoder.encode(frame)
        packets.append(
            RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * FRAME_SAMPLES,
                      payload=payloads[0])
        )  # fmt: skip
    return packets


async def test_packets_held_behind_a_hole_come_out_without_a_following_packet() -> None:
    opus = RTCRtpCodecParameters(
        mimeType="audio/opus", clockRate=48_000, channels=2, payloadType=111
    )
    stock = RemoteStreamTrack(kind="audio")
    track = LossTolerantAudioTrack(stock, [opus], max_hold_s=0.05)
    try:
        packets = opus_packets(5)
        first = asyncio.create_task(track.recv(), name="test/recv")
        for packet in (packets[0], packets[1]):
            track.on_packet(packet)
        assert (await asyncio.wait_for(first, 2)).pts == 0
        assert (await asyncio.wait_for(track.recv(), 2)).pts == FRAME_SAMPLES
        waiting = asyncio.create_task(track.recv(), name="test/recv")
        await asyncio.sleep(0.01)  # recv() now waits with nothing held
        track.on_packet(packets[3])  # 2 is lost; 3 and 4 end the spurt
        track.on_packet(packets[4])
        assert (await asyncio.wait_for(waiting, 2)).pts == 3 * FRAME_SAMPLES
        assert (await asyncio.wait_for(track.recv(), 2)).pts == 4 * FRAME_SAMPLES
        assert track.stats.buffer.skipped == 1
        waiting = asyncio.create_task(track.recv(), name="test/recv")
        await asyncio.sleep(0.01)
        track.stop()
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(waiting, 2)
    finally:
        await track.aclose()


async def test_a_late_hold_timer_gives_the_missing_packet_a_grace_period() -> None:
    opus = RTCRtpCodecParameters(
        mimeType="audio/opus", clockRate=48_000, channels=2, payloadType=111
    )
    skew = [0.0]  # our clock jumps ahead: what the track sees after a stalled loop
    track = LossTolerantAudioTrack(
        RemoteStreamTrack(kind="audio"), [opus], max_hold_s=0.03,
        clock=lambda: time.monotonic() + skew[0],
    )  # fmt: skip
    try:
        packets = opus_packets(4)
        track.on_packet(packets[0])
        track.on_packet(packets[1])
        await asyncio.wait_for(track.recv(), 2)
        await asyncio.wait_for(track.recv(), 2)
        track.on_packet(packets[3])  # 2 is missing
        waiting = asyncio.create_task(track.recv(), name="test/recv")
        await asyncio.sleep(0)
        skew[0] = 0.5
        async with asyncio.timeout(2):
            while track.stats.stall_graces == 0:
                await asyncio.sleep(0.001)
        track.on_packet(packets[2])  # arrives within the grace period
        assert (await asyncio.wait_for(waiting, 2)).pts == 2 * FRAME_SAMPLES
        assert (track.stats.buffer.late, track.stats.buffer.skipped) == (0, 0)
    finally:
        await track.aclose()
