"""The shared pacing clock for outbound tracks.

Pins down:
- a waiter is released at the first slot boundary at or after its due time, never
  before it, and waiters due in the same slot are released together;
- a due time in the past returns at once;
- a cancelled waiter does not disturb the others in its slot;
- a track paced by it keeps exact 20 ms spacing however its start is phased.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from gateway.media_tracks import AgentAudioTrack
from gateway.rtc.frame_clock import FrameClock


async def test_waiters_in_one_slot_are_released_together_not_early() -> None:
    clock = FrameClock(period_s=0.05)
    base = clock.now()
    released: dict[str, float] = {}

    async def wait(name: str, due: float) -> None:
        await clock.sleep_until(due)
        released[name] = clock.now()

    dues = {"a": base + 0.011, "b": base + 0.032, "c": base + 0.049, "d": base + 0.061}
    await asyncio.gather(*(wait(name, due) for name, due in dues.items()))
    for name, due in dues.items():
        assert released[name] >= due - 0.001
    assert abs(released["a"] - released["c"]) < 0.002  # one slot, one release
    assert 0.04 <= released["d"] - released["a"] <= 0.07  # the next slot


async def test_past_due_returns_at_once() -> None:
    clock = FrameClock()
    start = clock.now()
    await clock.sleep_until(start - 1.0)
    assert clock.now() - start < 0.005


async def test_a_cancelled_waiter_leaves_the_others_alone() -> None:
    clock = FrameClock(period_s=0.05)
    due = clock.now() + 0.03
    cancelled = asyncio.ensure_future(clock.sleep_until(due))
    kept = asyncio.ensure_future(clock.sleep_until(due))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.wait_for(kept, 1.0)
    with pytest.raises(asyncio.CancelledError):
        await cancelled


async def test_tracks_on_a_shared_clock_keep_exact_spacing() -> None:
    clock = FrameClock()
    tracks = [AgentAudioTrack(clock=clock) for _ in range(3)]
    times: list[list[float]] = [[], [], []]

    async def pull(i: int) -> None:
        await asyncio.sleep(0.007 * i)  # start out of phase with the clock's slots
        for _ in range(26):
            await tracks[i].recv()
            times[i].append(clock.now())

    await asyncio.gather(*(pull(i) for i in range(3)))
    for track_times in times:
        assert 0.45 <= track_times[-1] - track_times[0] <= 0.55  # 25 frames of 20 ms
        steady = [b - a for a, b in itertools.pairwise(track_times[1:])]
        assert all(0.01 <= step <= 0.03 for step in steady), steady
    for track in tracks:
        track.stop()
