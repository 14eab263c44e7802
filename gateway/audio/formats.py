"""Audio formats at the gateway's two edges, named once.

Pure constants and arithmetic: imports nothing from the project or the media stack.
"""

from __future__ import annotations

#: What the agent hears: 16 kHz mono signed 16-bit little-endian PCM.
AGENT_INPUT_RATE_HZ = 16_000
#: What the agent says: 24 kHz mono signed 16-bit little-endian PCM.
AGENT_OUTPUT_RATE_HZ = 24_000
#: The caller's side of the call: Opus at 48 kHz.
WEBRTC_RATE_HZ = 48_000
#: Bytes per sample of s16 PCM.
SAMPLE_BYTES = 2
#: Duration of one outbound RTP audio frame.
PTIME_S = 0.020

AGENT_INPUT_MIME = f"audio/pcm;rate={AGENT_INPUT_RATE_HZ}"
AGENT_OUTPUT_MIME = f"audio/pcm;rate={AGENT_OUTPUT_RATE_HZ}"


def samples_per_frame(rate_hz: int, ptime_s: float = PTIME_S) -> int:
    """Samples in one frame of `ptime_s` at `rate_hz` (960 at 48 kHz, 20 ms)."""
    return round(rate_hz * ptime_s)


#: One 20 ms frame on the caller's side: 960 samples at 48 kHz (the RTP clock's step).
WEBRTC_FRAME_SAMPLES = samples_per_frame(WEBRTC_RATE_HZ)


def pcm_duration_s(pcm: bytes | bytearray | memoryview, rate_hz: int) -> float:
    """Duration of mono s16 PCM at `rate_hz`."""
    return len(pcm) / (SAMPLE_BYTES * rate_hz)
