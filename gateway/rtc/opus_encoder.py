"""The agent's speech as Opus packets, encoded by us in the event loop.

aiortc's own encoder takes any frame, resamples it to 48 kHz stereo and encodes at
96 kbit/s in the default executor (a thread hop per 20 ms frame), after a pure-Python
RFC 6465 audio-level loop over the frame's samples. Speech needs none of that: we
encode the agent's 24 kHz mono PCM directly (libopus takes 24 kHz input; the RTP
clock stays 48 kHz, RFC 7587) and hand aiortc finished `av.Packet`s, which its
sender only packs. A mono stream is valid on the negotiated opus/48000/2: decoders
output stereo either way.

Measured on this machine, per 20 ms of espeak-ng speech at 24 kHz (complexity 3):
aiortc's way (48 kHz stereo, 96 kbit/s, complexity 10) ~200 us plus the level loop;
SILK/hybrid (`voip`) with in-band FEC 140-160 us, without FEC 117 us; CELT
(`audio`, what we use) 43 us at 36 kbit/s. Silence costs nothing: one cached packet.
Imports PyAV only.
"""

from __future__ import annotations

import fractions
import functools
from typing import Any

import av
import numpy as np

from gateway.audio.formats import (
    AGENT_OUTPUT_RATE_HZ,
    SAMPLE_BYTES,
    WEBRTC_RATE_HZ,
    samples_per_frame,
)

#: libopus's CELT mode (`audio` application): a third of the CPU of SILK/hybrid
#: (`voip`) for the agent's speech, which is the largest single cost of a busy call
#: (docs/benchmarks.md, "Where the CPU goes"). The price: no in-band FEC (it exists
#: only in SILK), so a lost downlink packet is concealed by the caller's decoder
#: rather than recovered; and ~36 instead of ~29 kbit/s while the agent speaks.
APPLICATION = "audio"
#: Target bitrate; CELT's VBR lands near 36 kbit/s on speech at this setting.
BITRATE_BPS = 24_000
#: libopus complexity 0-10: 3 -> 43 us, 5 -> 55 us per frame in CELT mode.
COMPLEXITY = 3
#: The agent's PCM goes in as it is (24 kHz mono s16); 20 ms per packet.
INPUT_RATE_HZ = AGENT_OUTPUT_RATE_HZ
INPUT_FRAME_SAMPLES = samples_per_frame(INPUT_RATE_HZ)
INPUT_FRAME_BYTES = INPUT_FRAME_SAMPLES * SAMPLE_BYTES
#: RTP timestamps count 48 kHz samples whatever the input rate.
RTP_FRAME_TICKS = samples_per_frame(WEBRTC_RATE_HZ)
RTP_TIME_BASE = fractions.Fraction(1, WEBRTC_RATE_HZ)
_INPUT_TIME_BASE = fractions.Fraction(1, INPUT_RATE_HZ)


def _new_codec() -> av.AudioCodecContext:
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = BITRATE_BPS
    codec.format = "s16"
    codec.layout = "mono"
    codec.sample_rate = INPUT_RATE_HZ
    codec.time_base = _INPUT_TIME_BASE
    codec.options = {"application": APPLICATION, "compression_level": str(COMPLEXITY)}
    return codec


class OpusSpeechEncoder:
    """Streaming encoder: one 20 ms frame of 24 kHz mono s16 PCM in, one packet out.

    Packets come back without timing; the track stamps them on the RTP clock.
    The encoder keeps ~6.5 ms of look-ahead, so a frame's packet ends a little
    before the frame does; encoding one quiet frame after speech lets the tail out.
    """

    def __init__(self) -> None:
        # Made at the first frame, not here: PyAV encodes through a filter graph that
        # starts a pool of (cores + 1) - 1 idle threads, so an encoder made for every
        # offer held 2 threads per offer on 2 cores until the garbage collector found
        # the call (hostile offers that never connect: threads 28 -> 294).
        self._codec: av.AudioCodecContext | None = None
        self._pts = 0

    def encode(self, pcm: bytes) -> av.Packet[Any]:
        """Encode exactly `INPUT_FRAME_BYTES` of PCM."""
        if self._codec is None:
            self._codec = _new_codec()
            # A fresh CELT encoder's first frame comes out ~27 dB down (no history to
            # predict its energy from): spend that frame on silence, not on the reply's
            # first 20 ms, or every reply would reach the caller one frame late.
            self._encode(self._codec, bytes(INPUT_FRAME_BYTES))
        return self._encode(self._codec, pcm)

    def _encode(self, codec: av.AudioCodecContext, pcm: bytes) -> av.Packet[Any]:
        if len(pcm) != INPUT_FRAME_BYTES:
            raise ValueError(f"a frame is {INPUT_FRAME_BYTES} bytes, not {len(pcm)}")
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = INPUT_RATE_HZ
        frame.pts = self._pts
        frame.time_base = _INPUT_TIME_BASE
        self._pts += INPUT_FRAME_SAMPLES
        packets = codec.encode(frame)
        if len(packets) != 1:  # libopus neither buffers nor splits 20 ms frames
            raise RuntimeError(f"libopus returned {len(packets)} packets for one frame")
        packet: av.Packet[Any] = packets[0]
        return packet


@functools.cache
def silence_payload() -> bytes:
    """One 20 ms Opus packet of digital silence, from a fresh encoder (cached)."""
    return bytes(OpusSpeechEncoder().encode(bytes(INPUT_FRAME_BYTES)))


def stamped(packet: av.Packet[Any], rtp_ticks: int) -> av.Packet[Any]:
    """Put `packet` at `rtp_ticks` on the 48 kHz RTP clock, as aiortc's `pack` reads it."""
    packet.pts = rtp_ticks
    packet.time_base = RTP_TIME_BASE
    return packet
