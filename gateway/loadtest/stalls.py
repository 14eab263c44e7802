"""When the tester's own event loop ran late, so its gaps can be told from the server's.

The tester dates each packet when its event loop reads it. If the loop is stalled
(CPU starved, another process on its core, a long callback), packets wait in the
socket and are read late together: an interval that looks like a gap from the
server. A probe timer every 50 ms records each window in which it fired more than
20 ms late; a gap mostly covered by such a window is the tester's.

Imports asyncio only.
"""

from __future__ import annotations

import asyncio
import bisect

PROBE_PERIOD_S = 0.05
#: A probe this late means packets read in that moment were dated this late too:
#: with 20 ms frames, enough to turn an interval into a > 40 ms gap.
LATE_PROBE_S = 0.02
#: Stall windows kept per process (a saturated tester fills this in ~8 minutes).
MAX_WINDOWS = 10_000


class LoopStalls:
    """Late-probe windows of this process's event loop, and the lateness statistics."""

    def __init__(self) -> None:
        self.windows: list[tuple[float, float]] = []
        """(when the probe was due, when it fired), in time order."""
        self.probes = 0
        self.late_probes = 0
        self.max_lag_s = 0.0
        self.recent_max_lag_s = 0.0
        """Largest lag since the last `take_recent_max()`."""

    async def watch(self) -> None:
        """Probe until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + PROBE_PERIOD_S
            await asyncio.sleep(PROBE_PERIOD_S)
            fired = loop.time()
            lag = fired - due
            self.probes += 1
            self.max_lag_s = max(self.max_lag_s, lag)
            self.recent_max_lag_s = max(self.recent_max_lag_s, lag)
            if lag > LATE_PROBE_S:
                self.late_probes += 1
                if len(self.windows) < MAX_WINDOWS:
                    self.windows.append((due, fired))

    def take_recent_max(self) -> float:
        lag, self.recent_max_lag_s = self.recent_max_lag_s, 0.0
        return lag

    def explains(self, start: float, end: float, gap_s: float) -> bool:
        """Whether the gap between packets read at `start` and `end` would not be a gap
        (<= `gap_s`) without the time the loop was stalled inside it."""
        first = bisect.bisect_left(self.windows, (start - 1.0, start - 1.0))
        stalled = 0.0
        for due, fired in self.windows[first:]:
            if due >= end:
                break
            stalled += max(0.0, min(end, fired) - max(start, due))
        return stalled > 0 and (end - start) - stalled <= gap_s
