"""The recognition worker pool: decodes run in threads, never on the event loop.

Whisper (CTranslate2) releases the GIL while it computes (see `whisper.py`), so
threads suffice; pocketsphinx holds it per `process_raw` call and is fed in 50 ms
slices. Work is bounded twice:

- per call, by its owner (`connection.py`): one decode in flight at a time;
- per process, here: a partial decode is only started when a worker is idle (it
  never queues behind other calls' work), and at most `max_jobs` decodes wait or
  run at once. A final decode over that bound is refused (`submit` returns None):
  the connection then tells the caller (`recognizer_busy`) instead of stalling.

Imports asyncio, concurrent.futures and the standard library only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Worker threads: the machine has two cores.
WORKERS = 2
#: Decodes running or waiting, all calls together. A final decode of Whisper tiny.en
#: costs ~0.1-0.2 s per worker (whisper.py), so 8 jobs wait at most ~1 s.
MAX_JOBS = 8


class RecognitionPool:
    """Threads for blocking recognition work, with a bound on work in flight."""

    def __init__(self, workers: int = WORKERS, max_jobs: int = MAX_JOBS) -> None:
        self.workers = workers
        self.max_jobs = max_jobs
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="local-live-asr"
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
        transcripts) is only taken by an idle worker; other work up to `max_jobs`."""
        limit = self.workers if optional else self.max_jobs
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

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` in a worker regardless of the bound (setup and cleanup)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _done(self, _: object) -> None:
        with self._lock:
            self._jobs -= 1


#: The process's pool, shared by every call of the offline model.
POOL = RecognitionPool()
