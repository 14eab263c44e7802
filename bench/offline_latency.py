"""Offline live model: end of the caller's speech to the first reply audio.

    .venv/bin/python bench/offline_latency.py [--runs 7] [--level gateway|adk]
        [--recognizers whisper,pocketsphinx]

`gateway` (default): a headless aiortc caller speaks an espeak-ng recording of "what
time is it now" into an in-process gateway serving the default agent with the
offline model, over loopback. Measured from the moment the caller's microphone
sent its last voiced 20 ms frame to the arrival of the first loud (RMS >= 300)
reply frame: includes Opus both ways, the jitter buffer, the endpointer's hangover,
recognition, ADK's tool call and synthesis.

`adk`: the same question fed in 20 ms chunks straight into ADK's `run_live` with the
default agent; measured from the end of the speech samples to the first audio
event. No network, no codec.

With several `--recognizers`, runs alternate between them (`local-live` and
`local-live-pocketsphinx`), so both are measured side by side under the same load.

Prints each run and the median; the target is a median <= 500 ms on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from aiohttp.test_utils import TestClient, TestServer
from google.adk.agents import Agent
from google.adk.sessions import InMemorySessionService
from google.genai import types
from pocketsphinx import Decoder

from gateway.agent_bridge import AdkAgentConnector
from gateway.agents.default import build_default_agent
from gateway.app import create_app
from gateway.config import load_settings
from gateway.models.local_live import whisper
from gateway.models.local_live.recognizer import decoder_config, recognize_open
from gateway.models.local_live.synthesizer import EspeakLibrary
from gateway.rtc import ice
from tests.support.adk_live import live_call
from tests.support.peers import call_gateway, listening_caller
from tests.support.speech import recording

QUESTION = "what time is it now"
LOUD_RMS = 300.0


class MarkTimes(logging.Handler):
    """Monotonic times of the offline model's "end of turn" / "first reply audio" logs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.marks: list[tuple[str, float]] = []
        self._offset = time.time() - time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        self.marks.append((record.getMessage(), record.created - self._offset))

    def first(self, message: str, after: float) -> float:
        return next(at for m, at in self.marks if m == message and at > after)


MARKS = MarkTimes()
BREAKDOWN: list[tuple[float, float, float]] = []
HEARD: list[str] = []
MODELS = {"whisper": "local-live", "pocketsphinx": "local-live-pocketsphinx"}


def agent_with(recognizer: str) -> Agent:
    """The default offline agent, on the model of `recognizer`."""
    agent = build_default_agent(environ={})
    return agent.model_copy(update={"model": MODELS[recognizer]})


async def one_gateway_run(client: TestClient, question: bytes) -> float:  # type: ignore[type-arg]
    caller = listening_caller()
    try:
        location = await call_gateway(client, caller)
        await caller.wait_connected()
        await caller.wait_message(type="session")
        await asyncio.sleep(0.5)
        caller.mic.play_pcm(question)
        await caller.wait_message(type="turn_complete", limit_s=20)
        user = await caller.wait_message(type="transcript", role="user", final=True)
        HEARD.append(user["text"])
        ended = caller.mic.last_voiced_at(LOUD_RMS)
        assert ended is not None
        first = next(f.at for f in caller.frames if f.at > ended and f.rms >= LOUD_RMS)
        turn_end = MARKS.first("end of turn", after=ended - 0.5)
        reply = MARKS.first("first reply audio", after=turn_end)
        BREAKDOWN.append((turn_end - ended, reply - turn_end, first - reply))
        await client.delete(location)
        return first - ended
    finally:
        await caller.close()


async def gateway_runs(runs: int, question: bytes, recognizer: str) -> list[float]:
    ice.restrict_host_addresses(["127.0.0.1"])
    settings = load_settings({"ice_addresses": "127.0.0.1"}, environ={})
    connector = AdkAgentConnector(
        agent_with(recognizer),
        InMemorySessionService(),
        app_name="bench",
    )
    client = TestClient(TestServer(create_app(settings, connector)))
    await client.start_server()
    try:
        return [await one_gateway_run(client, question) for _ in range(runs)]
    finally:
        await client.close()
        await connector.close()


async def adk_runs(runs: int, question: bytes, recognizer: str) -> list[float]:
    agent = agent_with(recognizer)
    results = []
    for _ in range(runs):
        async with live_call(agent, types.Modality.AUDIO) as call:
            ended = await call.speak(question)
            first = await call.wait_for(
                lambda e: bool(e.content and any(p.inline_data for p in e.content.parts or []))
            )
            await call.wait_for(lambda e: bool(e.turn_complete))
        results.append(first - (ended - trailing_quiet_s(question, 16_000)))
    return results


def trailing_quiet_s(pcm: bytes, rate_hz: int, frame_s: float = 0.02) -> float:
    """Seconds after the last 20 ms frame louder than `LOUD_RMS`."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    step = int(rate_hz * frame_s)
    frames = len(samples) // step
    for i in range(frames - 1, -1, -1):
        if np.sqrt(np.mean(samples[i * step : (i + 1) * step] ** 2)) >= LOUD_RMS:
            return (len(samples) - (i + 1) * step) / rate_hz
    return 0.0


def startup_costs() -> None:
    """What the first call would pay without the start-up warm-up (fresh process)."""
    started = time.perf_counter()
    Decoder(**decoder_config(lm=None))
    acoustic_s = time.perf_counter() - started
    open_started = time.perf_counter()
    recognize_open(bytes(3200))
    open_s = time.perf_counter() - open_started
    check_started = time.perf_counter()
    whisper.check_model_file(whisper.model_dir())
    check_s = time.perf_counter() - check_started
    whisper_started = time.perf_counter()
    whisper.WhisperEngine().transcribe(bytes(16_000))
    whisper_s = time.perf_counter() - whisper_started
    print(
        f"start-up: Whisper model hash check {check_s * 1000:.0f} ms, load (with the check) "
        f"and first decode {whisper_s * 1000:.0f} ms"
    )
    espeak_started = time.perf_counter()
    EspeakLibrary.load()
    espeak_s = time.perf_counter() - espeak_started
    print(
        f"start-up: acoustic model {acoustic_s * 1000:.0f} ms, open language model "
        f"{open_s * 1000:.0f} ms (lazy), libespeak-ng {espeak_s * 1000:.0f} ms, "
        f"total {(time.perf_counter() - started) * 1000:.0f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--level", choices=("gateway", "adk"), default="gateway")
    parser.add_argument("--recognizers", default="whisper,pocketsphinx")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    startup_costs()
    connection_log = logging.getLogger("gateway.models.local_live.connection")
    connection_log.setLevel(logging.DEBUG)
    connection_log.addHandler(MARKS)
    connection_log.propagate = False
    with tempfile.TemporaryDirectory() as tmp:
        rate = 48_000 if args.level == "gateway" else 16_000
        question = recording(Path(tmp), QUESTION, rate_hz=rate)
    runner = gateway_runs if args.level == "gateway" else adk_runs
    recognizers = args.recognizers.split(",")
    by_recognizer: dict[str, list[float]] = {r: [] for r in recognizers}
    for _ in range(args.runs):  # alternating: both under the same load
        for recognizer in recognizers:
            by_recognizer[recognizer] += await runner(1, question, recognizer)
    latencies = [x for pair in zip(*by_recognizer.values(), strict=True) for x in pair]
    for i, latency in enumerate(latencies, 1):
        heard = f" (heard {HEARD[i - 1]!r})" if HEARD else ""
        print(f"run {i}: {latency * 1000:.0f} ms{heard}")
        if BREAKDOWN:
            uplink, model, downlink = (x * 1000 for x in BREAKDOWN[i - 1])
            print(
                f"  uplink + hangover {uplink:.0f} ms, recognize + tool + first synthesis "
                f"{model:.0f} ms, downlink {downlink:.0f} ms"
            )
    for recognizer, values in by_recognizer.items():
        median = statistics.median(values)
        print(
            f"{args.level} {recognizer}: end of speech -> first reply audio, median "
            f"{median * 1000:.0f} ms, min {min(values) * 1000:.0f}, "
            f"max {max(values) * 1000:.0f} ({len(values)} runs)"
        )


if __name__ == "__main__":
    asyncio.run(main())
