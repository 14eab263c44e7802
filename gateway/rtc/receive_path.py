"""Our own receive path for a caller's audio: aiortc's RTP in, decoded frames out.

aiortc's `RTCRtpReceiver` keeps RTCP, statistics, SSRC and codec checks, and SRTP;
only the step after those (reassembly, jitter buffering, decoding) is replaced,
because its audio jitter buffer turns each lost packet into 4-5 lost frames and
adds ~80 ms of prefetch delay (see `reorder_buffer.py` for the numbers and the
policy that replaces it).

The seam, and why this one: the receiver has no public hook between "packet accepted"
and "frame decoded", and the peer connection builds receivers itself, so a subclass
cannot be slotted in. `install_receive_path` swaps the receiver's private jitter
buffer, per receiver and never globally, for a tap that hands each packet to a
`LossTolerantAudioTrack` and gives the receiver nothing to decode (its decoder thread
then idles). The swap itself is `rtc/_aiortc.py`'s `tap_packets`, guarded by
`tests/test_seams.py`; it raises `ReceivePathUnavailable` if aiortc changed, so the
caller falls back to the stock track.

Packets arriving faster than real time are dropped (and counted, `policed`) beyond a
small burst before they reach the reorder buffer (`rtc/real_time_policer.py`): a
caller sending at 10x real time no longer feeds the agent ten seconds per second.

Imports aiortc, PyAV, `rtc._aiortc`, `rtc.real_time_policer` and `rtc.reorder_buffer`;
nothing about HTTP or agents.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import av
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpTransceiver
from aiortc.codecs import get_decoder
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription
from av.frame import Frame

from gateway.audio.formats import PTIME_S, WEBRTC_RATE_HZ
from gateway.rtc._aiortc import ReceivePathUnavailable, ensure_tappable, tap_packets
from gateway.rtc.real_time_policer import RealTimePolicer, packet_duration_s
from gateway.rtc.reorder_buffer import BufferedPacket, ReleasedPacket, ReorderBuffer, ReorderStats

logger = logging.getLogger(__name__)

OPUS_RATE_HZ = WEBRTC_RATE_HZ  # Opus always decodes at 48 kHz (RFC 7587)
OPUS_TIME_BASE = fractions.Fraction(1, OPUS_RATE_HZ)
#: How long held packets wait for a missing one when no packet follows (the end of a
#: talk spurt); while packets flow, a hole is skipped after 3 later packets instead.
DEFAULT_MAX_HOLD_S = 0.06
#: A hold timer that fires this late means the event loop was stalled; packets that
#: arrived meanwhile get `STALL_GRACE_S` to come through before holes are skipped.
STALL_TOLERANCE_S = 0.01
STALL_GRACE_S = 0.02
#: Released packets waiting for `recv()`; beyond this the consumer is stalled and the
#: oldest (staler) packets are dropped and counted in `overflow_dropped`. 1 s of audio.
DEFAULT_MAX_QUEUE_PACKETS = 50


#: The codecs the caller may send, or a function giving them once known (the remote
#: description is applied only after aiortc's "track" event).
CodecSource = Sequence[RTCRtpCodecParameters] | Callable[[], Sequence[RTCRtpCodecParameters]]


@dataclass(frozen=True, slots=True)
class ReceivePathStats:
    """What happened to the caller's packets; see `ReorderStats` for the buffer."""

    buffer: ReorderStats
    frames_out: int
    overflow_dropped: int
    decode_errors: int
    unknown_payload: int
    stock_decoded: int
    """Frames aiortc's own decoder produced: 0 unless the tap stopped working."""
    stall_graces: int
    """Hold timers that fired late (event loop stalled) and were given a grace period."""
    policed: int = 0
    """Packets dropped on arrival for coming faster than real time (beyond the burst)."""


class MonoOpusDecoder(Decoder):
    """Opus to 48 kHz *mono* s16: aiortc's decoder asks libopus for stereo, which
    costs ~15 us more per 20 ms frame and then twice the work to downmix and
    resample for the agent (16 kHz mono). A caller's voice is mono anyway; libopus
    downmixes a stereo stream itself. (FFmpeg's libopus wrapper always outputs
    48 kHz, so the agent-rate resample stays.)"""

    def __init__(self) -> None:
        self.codec = av.CodecContext.create("libopus", "r")
        self.codec.format = "s16"
        self.codec.layout = "mono"
        self.codec.sample_rate = OPUS_RATE_HZ

    def decode(self, encoded_frame: JitterFrame) -> list[Frame]:
        packet = av.Packet(encoded_frame.data)
        packet.pts = encoded_frame.timestamp
        packet.time_base = OPUS_TIME_BASE
        return list(self.codec.decode(packet))


def _new_decoder(codec: RTCRtpCodecParameters) -> Decoder:
    if codec.mimeType.lower() == "audio/opus":
        return MonoOpusDecoder()
    return get_decoder(codec)


class LossTolerantAudioTrack(MediaStreamTrack):
    """The caller's audio, decoded in order as packets arrive; holes are skipped.

    Frames are 20 ms of s16 audio (Opus: 48 kHz mono; other codecs as aiortc decodes
    them) with `pts` on the RTP clock relative to the first packet, so a gap in `pts`
    is audio that never arrived. Ends when the receiver stops.
    """

    kind = "audio"

    def __init__(
        self,
        stock_track: MediaStreamTrack,
        codecs: CodecSource,
        max_hold_s: float = DEFAULT_MAX_HOLD_S,
        max_queue_packets: int = DEFAULT_MAX_QUEUE_PACKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._codec_source = codecs
        self._codecs: dict[int, RTCRtpCodecParameters] | None = None
        self._decoders: dict[str, Decoder] = {}
        self._buffer = ReorderBuffer(max_hold_s=max_hold_s)
        self._policer = RealTimePolicer()
        self._clock = clock
        self._ready: deque[ReleasedPacket] = deque()
        self._frames: deque[Frame] = deque()
        self._max_queue = max_queue_packets
        self._wakeup = asyncio.Event()
        self._receiver_ended = False
        self._grace_until = 0.0
        self._frames_out = self._overflow = self._decode_errors = self._unknown = 0
        self._stock_decoded = self._stall_graces = self._policed = 0
        self._watcher = asyncio.get_running_loop().create_task(
            self._watch_receiver(stock_track), name=f"receive-path/{self.id}/watch"
        )

    @property
    def stats(self) -> ReceivePathStats:
        return ReceivePathStats(
            buffer=self._buffer.stats,
            frames_out=self._frames_out,
            overflow_dropped=self._overflow,
            decode_errors=self._decode_errors,
            unknown_payload=self._unknown,
            stock_decoded=self._stock_decoded,
            stall_graces=self._stall_graces,
            policed=self._policed,
        )

    def on_packet(self, packet: RtpPacket) -> None:
        """Called by the tap inside the receiver's packet handler: only enqueues."""
        now = self._clock()
        codec = self._codec(packet.payload_type)
        duration = packet_duration_s(codec.name if codec else "", packet.payload)
        if not self._policer.admit(duration or PTIME_S, now):
            self._policed += 1
            return
        item = BufferedPacket(
            sequence_number=packet.sequence_number,
            timestamp=packet.timestamp,
            payload_type=packet.payload_type,
            payload=packet.payload,
        )
        released = self._buffer.push(item, now)
        self._take(released)
        if not released and self._buffer.deadline_s() is not None:
            self._wakeup.set()  # a waiting recv() must re-arm its timer for the hole

    async def recv(self) -> Frame:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._frames:
                self._frames_out += 1
                return self._frames.popleft()
            if self._ready:
                self._frames.extend(self._decode(self._ready.popleft()))
            elif self._receiver_ended:
                self.stop()
            else:
                await self._wait()

    def stop(self) -> None:
        if self.readyState == "live":
            stats = self.stats
            logger.info(
                "receive path %s ended: %d packets, %d frames out, %d late, %d skipped, "
                "%d overflow, %d decode errors, %d stall graces, %d policed",
                self.id, stats.buffer.received, stats.frames_out, stats.buffer.late,
                stats.buffer.skipped, stats.overflow_dropped, stats.decode_errors,
                stats.stall_graces, stats.policed,
            )  # fmt: skip
        super().stop()
        self._watcher.cancel()
        self._wakeup.set()  # a recv() waiting for packets sees the end

    async def aclose(self) -> None:
        """Stop and wait (bounded) for the owned watcher task to finish."""
        self.stop()
        await asyncio.wait({self._watcher}, timeout=1.0)

    async def _wait(self) -> None:
        """Sleep until packets are released or the held ones are due."""
        self._wakeup.clear()
        deadline = self._buffer.deadline_s()
        if deadline is None:  # the usual case (packets in order): no timer to arm
            await self._wakeup.wait()
            return
        deadline = max(deadline, self._grace_until)
        try:
            async with asyncio.timeout(max(0.0, deadline - self._clock())):
                await self._wakeup.wait()
        except TimeoutError:
            now = self._clock()
            if now - deadline > STALL_TOLERANCE_S:
                # The timer fired late: the loop was stalled and packets may still be
                # on their way in through aiortc's tasks. Look again shortly.
                self._grace_until = now + STALL_GRACE_S
                self._stall_graces += 1
                return
            self._take(self._buffer.expire(now))

    def _take(self, released: list[ReleasedPacket]) -> None:
        for item in released:
            if len(self._ready) >= self._max_queue:
                self._ready.popleft()
                self._overflow += 1
            self._ready.append(item)
        if released:
            self._wakeup.set()

    def _codec(self, payload_type: int) -> RTCRtpCodecParameters | None:
        if self._codecs is None:
            source = self._codec_source
            codecs = source() if callable(source) else source
            self._codecs = {c.payloadType: c for c in codecs if c.payloadType is not None}
        return self._codecs.get(payload_type)

    def _decode(self, item: ReleasedPacket) -> list[Frame]:
        codec = self._codec(item.packet.payload_type)
        if codec is None:
            self._unknown += 1
            return []
        name = codec.mimeType.lower()
        decoder = self._decoders.get(name)
        if decoder is None:
            decoder = self._decoders[name] = _new_decoder(codec)
        frame = JitterFrame(data=item.packet.payload, timestamp=item.media_timestamp)
        try:
            frames = decoder.decode(frame)
        except av.FFmpegError as exc:
            self._decode_errors += 1
            logger.debug("receive path: %s decode failed: %s", name, exc)
            return []
        return frames

    async def _watch_receiver(self, stock_track: MediaStreamTrack) -> None:
        """The stock track gets no frames (the tap keeps its decoder idle); it ends
        when the receiver stops, and so do we, after releasing what is held."""
        try:
            while True:
                await stock_track.recv()
                self._stock_decoded += 1
                logger.warning("receive path: the stock decoder produced a frame")
        except MediaStreamError:
            pass
        self._take(self._buffer.flush())
        self._receiver_ended = True
        self._wakeup.set()


def install_receive_path(
    receiver: RTCRtpReceiver,
    codecs: CodecSource,
    max_hold_s: float = DEFAULT_MAX_HOLD_S,
) -> LossTolerantAudioTrack:
    """Route an audio receiver's packets through our path; returns the track to read
    instead of `receiver.track`. Call before media flows (from the "track" event or
    right after `setRemoteDescription`). Raises `ReceivePathUnavailable` if aiortc
    changed. The track ends when the receiver stops; if it never started, the owner
    must `stop()` it (`caller_audio_track` does so when the connection closes)."""
    if receiver.track is None or receiver.track.kind != "audio":
        raise ValueError("install_receive_path needs an audio receiver")
    ensure_tappable(receiver)
    track = LossTolerantAudioTrack(receiver.track, codecs, max_hold_s=max_hold_s)
    tap_packets(receiver, track.on_packet)
    return track


def remote_codecs(
    pc: RTCPeerConnection, transceiver: RTCRtpTransceiver
) -> list[RTCRtpCodecParameters]:
    """The codecs (with the remote's payload types) of the transceiver's m-line in the
    applied remote description: what the caller may send us."""
    description = pc.remoteDescription
    if description is None:
        raise ValueError("remote_codecs needs an applied remote description")
    media = SessionDescription.parse(description.sdp).media
    for m in media:
        if m.kind == transceiver.kind and m.rtp.muxId == transceiver.mid:
            return list(m.rtp.codecs)
    raise ValueError("the transceiver has no m-line in the remote description")


def caller_audio_track(pc: RTCPeerConnection, track: MediaStreamTrack) -> MediaStreamTrack:
    """For a "track" event: the caller's audio through our receive path, or aiortc's
    stock `track` (logged) if this aiortc no longer has the seam. Our track is stopped
    when the connection closes or fails, so it never outlives the call."""
    transceiver = next((t for t in pc.getTransceivers() if t.receiver.track is track), None)
    if transceiver is None:  # not a receiver's track: nothing to route
        return track
    try:
        ours = install_receive_path(transceiver.receiver, lambda: remote_codecs(pc, transceiver))
    except ReceivePathUnavailable as exc:
        logger.warning("loss-tolerant receive path unavailable, using aiortc's: %s", exc)
        return track

    def on_connection_state() -> None:
        if pc.connectionState in ("closed", "failed"):
            ours.stop()

    pc.on("connectionstatechange", on_connection_state)
    return ours


__all__ = [
    "LossTolerantAudioTrack",
    "ReceivePathStats",
    "ReceivePathUnavailable",
    "caller_audio_track",
    "install_receive_path",
    "remote_codecs",
    "tap_packets",
]
