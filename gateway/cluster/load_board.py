"""The workers' load board: each worker's pid, live calls, whether it drains, and its
agent-health counters, in memory they all share.

The supervisor creates it (an unlinked temporary file, so nothing is left behind)
and hands its descriptor to every worker, which maps it. Each slot has one writer:
its worker (the supervisor only clears the slot of a worker that died), so no lock
is needed. Readers use it to place calls and to aggregate `/healthz` and `/stats`;
a reading may be a call or two stale, which placement tolerates because the owner
of a slot re-checks its own capacity before taking a call. Imports the stdlib, the
`WorkerLoad` value of `calls.service` and the counter names of `metrics.counters`.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile

from gateway.calls.service import WorkerLoad
from gateway.metrics.counters import COUNTER_NAMES

_COUNTERS = struct.Struct(f"={len(COUNTER_NAMES)}q")
#: pid (0: not serving), calls, draining (0 or 1), counters
_SLOT = struct.Struct(f"=qqq{len(COUNTER_NAMES)}q")
_PID = _CALLS = _DRAINING = struct.Struct("=q")


class LoadBoard:
    """`workers` slots of (pid, calls) in a shared mapping of file descriptor `fd`."""

    def __init__(self, fd: int, workers: int) -> None:
        self.fd = fd
        self.workers = workers
        self._map = mmap.mmap(fd, _SLOT.size * workers)

    @classmethod
    def create(cls, workers: int) -> LoadBoard:
        """A zeroed board; its descriptor is inheritable (pass it to the workers)."""
        fd, path = tempfile.mkstemp(prefix="gateway-board-")
        os.unlink(path)
        os.ftruncate(fd, _SLOT.size * workers)
        return cls(fd, workers)

    def set_serving(self, index: int, pid: int) -> None:
        """Worker `index` (process `pid`) takes calls; pid 0: it does not."""
        _PID.pack_into(self._map, index * _SLOT.size, pid)

    def set_calls(self, index: int, calls: int) -> None:
        _CALLS.pack_into(self._map, index * _SLOT.size + _PID.size, calls)

    def set_draining(self, index: int) -> None:
        """Worker `index` drains: it takes no new calls (gateway/ops/drain.py)."""
        _DRAINING.pack_into(self._map, index * _SLOT.size + 2 * _PID.size, 1)

    def set_counters(self, index: int, counters: tuple[int, ...]) -> None:
        _COUNTERS.pack_into(self._map, index * _SLOT.size + 3 * _PID.size, *counters)

    def clear(self, index: int) -> None:
        _SLOT.pack_into(self._map, index * _SLOT.size, *([0] * (3 + len(COUNTER_NAMES))))

    def slot(self, index: int) -> WorkerLoad | None:
        """The worker at `index`, or None while it is not serving."""
        pid, calls, draining, *counters = _SLOT.unpack_from(self._map, index * _SLOT.size)
        return WorkerLoad(pid, calls, tuple(counters), draining=bool(draining)) if pid else None

    def serving(self) -> dict[int, WorkerLoad]:
        """Every serving worker by index."""
        slots = {i: self.slot(i) for i in range(self.workers)}
        return {i: load for i, load in slots.items() if load is not None}

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)
