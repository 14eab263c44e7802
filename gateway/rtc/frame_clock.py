"""One pacing timer per 20 ms for every outbound track on an event loop.

Each call's outbound track waits for its next frame time. With `asyncio.sleep` that
is one timer per call per 20 ms (a TimerHandle, a heap push and pop, a callback);
with this clock, waiters due within the same 20 ms slot share one timer and are
released together (measured: 7 us -> 2-4 us per call per frame, 60 tracks). A waiter
is released at the first slot boundary at or after its due time; a track starts on a
boundary (`slot_start`), so its frames are due exactly on boundaries.

Pure asyncio; imports nothing from the project but the frame duration.
"""

from __future__ import annotations

import asyncio
import math
import weakref

from gateway.audio.formats import PTIME_S

_SLACK = 1e-4  # of a period
_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FrameClock] = (
    weakref.WeakKeyDictionary()
)


class FrameClock:
    """Slots of `period_s` on the loop's clock, anchored when the clock is made."""

    def __init__(self, period_s: float = PTIME_S) -> None:
        self._loop = asyncio.get_running_loop()
        self._period_s = period_s
        self._origin = self._loop.time()
        self._slots: dict[int, list[asyncio.Future[None]]] = {}

    @classmethod
    def of_running_loop(cls) -> FrameClock:
        """The clock shared by everything on the running event loop."""
        loop = asyncio.get_running_loop()
        clock = _clocks.get(loop)
        if clock is None:
            clock = _clocks[loop] = cls()
        return clock

    def now(self) -> float:
        return self._loop.time()

    def slot_start(self, t: float) -> float:
        """The last slot boundary at or before `t`: where a paced stream should start,
        so its due times fall on boundaries and a late release never makes the next
        frame overdue (which would send two frames at once, then wait 40 ms)."""
        return self._origin + math.floor((t - self._origin) / self._period_s) * self._period_s

    async def sleep_until(self, due: float) -> None:
        """Return at the first slot boundary at or after `due` (at once if past)."""
        # Due times computed on the boundaries may carry float error: 2 us of slack.
        slot = math.ceil((due - self._origin) / self._period_s - _SLACK)
        at = self._origin + slot * self._period_s
        if at <= self._loop.time():
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        waiters = self._slots.get(slot)
        if waiters is None:
            waiters = self._slots[slot] = []
            self._loop.call_at(at, self._release, slot)
        waiters.append(waiter)
        await waiter

    def _release(self, slot: int) -> None:
        for waiter in self._slots.pop(slot, ()):
            if not waiter.done():  # a cancelled waiter is simply skipped
                waiter.set_result(None)
