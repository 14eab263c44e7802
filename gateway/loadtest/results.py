"""What one call measured, and a worker's running totals: plain, picklable values.

Times are seconds; `*_s` lists hold one value per event (turn, barge-in). Imports
nothing from the media stack (results cross process boundaries).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class CallOutcome(StrEnum):
    COMPLETED = "completed"
    """Connected and held for the whole duration."""
    REFUSED = "refused"
    """The gateway answered 503 (at capacity)."""
    FAILED = "failed"
    """Anything else: HTTP error, no media in time, connection lost."""


@dataclass
class CallResult:
    index: int
    outcome: CallOutcome = CallOutcome.FAILED
    error: str = ""
    http_status: int | None = None
    retry_after_s: float | None = None
    answer_s: float | None = None
    """Offer POSTed to SDP answer received."""
    connect_s: float | None = None
    """Offer creation started to the first agent RTP packet received."""
    held_s: float = 0.0
    lost_at_s: float | None = None
    """A call that died early: seconds into the hold when its last packet arrived."""
    lost_gap_s: float | None = None
    """A call that died early: silence from its last packet until the caller noticed."""
    prompts: int = 0
    """Prompts spoken and either answered or timed out (not those cut by hang-up)."""
    unanswered: int = 0
    reply_latency_s: list[float] = field(default_factory=list)
    """End of each prompt to the first agent audio (RMS above the threshold)."""
    barge_in_to_silence_s: list[float] = field(default_factory=list)
    """First packet of a barge-in prompt sent to the agent's audio going silent."""
    barge_in_missed: int = 0
    """Barge-ins due when the agent was already silent (its answer was shorter)."""
    barge_in_not_silenced: int = 0
    """Barge-ins after which the agent's audio did not stop within the reply timeout."""
    interrupted_delay_s: list[float] = field(default_factory=list)
    """`interrupted` message arrival minus the agent audio going silent (> 0: later)."""
    transcript_delay_s: list[float] = field(default_factory=list)
    """Agent `transcript` arrival minus that answer's first audio (< 0: text first)."""
    packets: int = 0
    lost_packets: int = 0
    frame_intervals: int = 0
    gaps: int = 0
    max_gap_s: float = 0.0
    tester_gaps: int = 0
    """Gaps that the tester's own event-loop stalls explain (see `stalls.py`)."""
    gap_log: list[tuple[float, float]] = field(default_factory=list)
    """(seconds after the first packet, gap length) of the call's first gaps."""
    decoded_packets: int = 0
    send_restarts: int = 0
    """Times the caller's send clock fell > 200 ms behind (the tester was stalled)."""


@dataclass
class WorkerProgress:
    """A worker's totals so far, sent to the coordinator once per interval."""

    worker: int
    started: int = 0
    live: int = 0
    completed: int = 0
    refused: int = 0
    failed: int = 0
    replies: int = 0
    recent_reply_latency_s: list[float] = field(default_factory=list)
    frame_intervals: int = 0
    gaps: int = 0
    tester_gaps: int = 0
    cpu_s: float = 0.0
    at_s: float = 0.0
    max_loop_lag_s: float = 0.0
    """Largest event-loop delay seen in the last interval (timer overshoot)."""
    lag_probes: int = 0
    """Event-loop probes so far (one per 50 ms)."""
    late_lag_probes: int = 0
    """Probes that fired more than 20 ms late."""
