"""What the gateway's processes are using: live calls, CPU time and memory.

Served as `GET /stats` so a load tester (or an operator) can read the server's cost
from outside, remote or local. Linux `/proc` for resident memory and for sibling
worker processes, `resource` for this process's CPU.
Imports nothing from the media stack or ADK.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class ProcessStats:
    pid: int
    calls: int
    #: user + system CPU seconds this process has used since it started.
    cpu_s: float
    #: resident memory now (not the peak), bytes.
    rss_bytes: int
    #: monotonic clock of the reading, seconds (to turn two readings into a rate).
    at_s: float

    def as_json(self) -> dict[str, float | int]:
        return asdict(self)


def resident_bytes() -> int:
    """Current resident set size; the peak (`ru_maxrss`) where /proc is missing."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def process_stats(calls: int) -> ProcessStats:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return ProcessStats(
        pid=os.getpid(),
        calls=calls,
        cpu_s=usage.ru_utime + usage.ru_stime,
        rss_bytes=resident_bytes(),
        at_s=time.monotonic(),
    )


_CLOCK_TICKS_HZ = os.sysconf("SC_CLK_TCK")


def sibling_stats(pid: int, calls: int) -> ProcessStats | None:
    """Another process's reading from /proc (CPU to 1/`SC_CLK_TCK` s); None if it is gone."""
    if pid == os.getpid():
        return process_stats(calls)
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # Fields after the parenthesised command name; utime and stime are 14 and 15.
            fields = stat.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return ProcessStats(
        pid=pid,
        calls=calls,
        cpu_s=(int(fields[11]) + int(fields[12])) / _CLOCK_TICKS_HZ,
        rss_bytes=pages * os.sysconf("SC_PAGE_SIZE"),
        at_s=time.monotonic(),
    )
