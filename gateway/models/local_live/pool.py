"""The recognition worker pool: decodes run in threads, never on the event loop.

Whisper (CTranslate2) releases the GIL while it computes (see `whisper.py`), so
threads suffice; pocketsphinx holds it per `process_raw` call and is fed in 50 ms
slices. Work is bounded twice:

- per call, by its owner (`connection.py`): one decode in flight at a time;
- per process, here: a partial transcript is only decoded when no other decode is
  in flight (`optional` work: shed first under load, it never queues), and at most
  `max_jobs` decodes wait or run at once. A final decode over that bound is refused
  (`submit` returns None): the connection then tells the caller (`recognizer_busy`)
  instead of stalling.

The worker threads run at a lower CPU priority (`DECODE_NICE`), and so do the threads
the Whisper engine starts when it is loaded through `call` (Linux threads inherit
their creator's nice value): when a core is short, the event loop, which moves every
call's audio, gets it first and decodes finish later, instead of audio gaps.

Imports asyncio, concurrent.futures and the standard library only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: Worker threads: the machine has two cores.
WORKERS = 2
#: Decodes running or waiting, all calls together. A final decode of Whisper tiny.en
#: costs ~0.1-0.2 s per worker (whisper.py), so 8 jobs wait at most ~1 s.
MAX_JOBS = 8
#: Optional work (partial transcripts) runs only while fewer decodes are in flight.
OPTIONAL_BELOW_JOBS = 1
#: Nice value of the decoding threads (0 is the event loop's). Linux CFS weights:
#: nice 0 = 1024, 10 = 110, 19 = 15 (kernel sched_prio_to_weight), so with two decode
#: threads busy the loop gets ~82 % of a contended core at 10 and ~97 % at 19.
#: Measured, 10 offline calls on one core, alternating (docs/benchmarks.md): gaps
#: 0.047/0.000/0.067 % at 19 against 0.300/0.213/0.133/0.160 % at 10.
DECODE_NICE = 19


def lower_priority() -> None:
    """Give the calling thread `DECODE_NICE` (Linux: nice is per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICE)
    except (AttributeError, OSError) as exc:  # not Linux: decodes compete as equals
        logger.debug("recognition threads keep their priority: %s", exc)


class RecognitionPool:
    """Threads for blocking recognition work, with a bound on work in flight."""

    def __init__(self, workers: int = WORKERS, max_jobs: int = MAX_JOBS) -> None:
        self.workers = workers
        self.max_jobs = max_jobs
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="local-live-asr", initializer=lower_priority
        )
        self._lock = threading.Lock()
        self._jobs = 0
        self.refused = 0

    @property
    def jobs(self) -> int:
        """Decodes running or waiting now."""
        with self._lock:
            return self._jobs

    def submit(
        self, fn: Callable[..., T], *args: object, optional: bool = False
    ) -> asyncio.Future[T] | None:
        """Run `fn(*args)` in a worker; None when refused. `optional` work (partial
        transcripts) is only taken while nothing else is decoding; other work up to
        `max_jobs`."""
        limit = OPTIONAL_BELOW_JOBS if optional else self.max_jobs
        with self._lock:
            if self._jobs >= limit:
                self.refused += not optional
                return None
            self._jobs += 1
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return asyncio.wrap_future(future)

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in a worker, waiting for it (start-up, outside the event loop)."""
        return self._executor.submit(fn, *args).result()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` in a worker regardless of the bound (setup and cleanup)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _done(self, _: object) -> None:
        with self._lock:
            self._jobs -= 1


#: The process's pool, shared by every call of the offline model.
POOL = RecognitionPool()
