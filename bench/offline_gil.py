"""Does a recognizer stall the event loop? Loop lag while decoding in a thread.

    .venv/bin/python bench/offline_gil.py [--decodes 6]

An asyncio loop sleeps 5 ms at a time and records how late each wake-up is, first
idle, then while a worker thread decodes an espeak-ng utterance again and again with
Whisper (the pool's way: CTranslate2, which should release the GIL while it
computes), then with pocketsphinx's open language model (which holds it for each
`process_raw` call; the model feeds it 50 ms slices). Prints the median, p99 and
largest lag of each phase. A recognizer holding the GIL shows up as lags as long as
its calls.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway.models.local_live import whisper
from gateway.models.local_live.recognizer import recognize_open
from tests.support.speech import recording

TICK_S = 0.005


async def lags_while(work: Callable[[], object] | None, decodes: int) -> list[float]:
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(TICK_S)
            lags.append(time.perf_counter() - before - TICK_S)

    ticker = asyncio.create_task(tick())
    if work is None:
        await asyncio.sleep(2.0)
    else:
        for _ in range(decodes):
            await loop.run_in_executor(None, work)
    done.set()
    await ticker
    return lags


def summary(name: str, lags: list[float]) -> str:
    ordered = sorted(lags)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    return (
        f"{name}: {len(lags)} ticks, lag median {statistics.median(lags) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decodes", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        speech = recording(Path(tmp), "what is the weather like today", pad_s=0.3)
    engine = whisper.engine()
    recognize_open(speech)  # load the language model before measuring
    phases: list[tuple[str, Callable[[], object] | None]] = [
        ("idle", None),
        ("whisper (15 s window)", lambda: engine.transcribe(speech)),
        ("whisper (30 s window)", lambda: engine.transcribe(speech, 30.0)),
        ("pocketsphinx open model", lambda: recognize_open(speech)),
    ]
    for name, work in phases:
        print(summary(name, await lags_while(work, args.decodes)))


if __name__ == "__main__":
    asyncio.run(main())
