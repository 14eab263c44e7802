"""A saturated recognition pool: the caller is told, and media keeps flowing.

Pins down:
- a connection whose turn cannot get a worker (the pool's bound on waiting work is
  reached) answers with `error_code="recognizer_busy"` at the end of that turn, not
  with silence; once the pool has room, the next turn is recognized;
- in a running gateway, with both workers busy with real Whisper decodes, a caller
  who speaks gets a non-fatal `recognizer_busy` data-channel `error` and stays in the
  call, while another call's spoken answer keeps arriving frame after frame: no
  interval between its frames reaches 250 ms (a decode holding the GIL would stall
  it for ~0.4 s per decode, see gateway/models/local_live/whisper.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.adk.models.llm_response import LlmResponse
from google.adk.sessions import InMemorySessionService
from google.genai import types

from gateway.agent_bridge import AdkAgentConnector
from gateway.agents.default import build_default_agent
from gateway.audio.formats import AGENT_INPUT_MIME, WEBRTC_RATE_HZ
from gateway.loadtest.listener import GAP_S
from gateway.models.local_live import whisper
from gateway.models.local_live.connection import RECOGNIZER_BUSY, LocalLiveConnection
from gateway.models.local_live.listeners import WhisperRecognizer
from gateway.models.local_live.pool import POOL, RecognitionPool
from gateway.models.local_live.replies import ToolSpec, grammar_phrases
from gateway.models.local_live.synthesizer import default_synthesizer
from tests.support.peers import call_gateway, listening_caller
from tests.support.speech import recording

TIME = ToolSpec("get_current_time", "Returns the current local time and date.")
CHUNK_BYTES = 640  # 20 ms of 16 kHz s16


async def feed(connection: LocalLiveConnection, pcm: bytes) -> None:
    """`pcm` then 1 s of silence, paced in 20 ms chunks."""
    audio = pcm + bytes(32_000)
    for offset in range(0, len(audio), CHUNK_BYTES):
        blob = types.Blob(data=audio[offset : offset + CHUNK_BYTES], mime_type=AGENT_INPUT_MIME)
        await connection.send_realtime(blob)
        await asyncio.sleep(0.02)


async def next_response(
    responses: AsyncIterator[LlmResponse], predicate: Callable[[LlmResponse], bool]
) -> LlmResponse:
    async with asyncio.timeout(15):
        async for response in responses:
            if predicate(response):
                return response
    raise AssertionError("the connection ended")


async def test_turn_without_a_worker_gets_recognizer_busy(tmp_path: Path) -> None:
    pool = RecognitionPool(workers=1, max_jobs=1)
    release = threading.Event()
    blocker = pool.submit(release.wait, 30)
    assert blocker is not None
    connection = LocalLiveConnection(
        recognizer=WhisperRecognizer(grammar_phrases([TIME])),
        synthesizer=default_synthesizer(),
        tools=[TIME],
        text_mode=True,
        pool=pool,
    )
    connection.start()
    responses = connection.receive()
    speech = recording(tmp_path, "what time is it now", pad_s=0.3)
    try:
        await feed(connection, speech)
        busy = await next_response(responses, lambda r: r.error_code is not None)
        assert busy.error_code == RECOGNIZER_BUSY
        assert busy.error_message
        assert pool.refused >= 1  # the final decode (and the speculative one before it)
        release.set()
        await blocker
        await feed(connection, speech)
        heard = await next_response(
            responses, lambda r: bool(r.input_transcription and r.input_transcription.finished)
        )
        assert heard.input_transcription is not None
        assert "time" in (heard.input_transcription.text or "").lower()
    finally:
        release.set()
        await connection.close()


@pytest.fixture
async def connector() -> AsyncIterator[AdkAgentConnector]:
    connector = AdkAgentConnector(
        build_default_agent(environ={}), InMemorySessionService(), app_name="busy"
    )
    yield connector
    await connector.close()


def keep_decoding(stop: threading.Event) -> None:
    """Real Whisper work until `stop`: 10 s of noise, decoded again and again."""
    noise = np.random.default_rng(3).normal(0, 2000, 160_000).astype("<i2").tobytes()
    while not stop.is_set():
        whisper.engine().transcribe(noise)


@pytest.mark.slow
async def test_saturated_pool_reports_busy_while_other_calls_audio_flows(
    connector: AdkAgentConnector, start_gateway: Callable[..., Any], tmp_path: Path
) -> None:
    client = await start_gateway(connector)
    listener, speaker = listening_caller(), listening_caller()
    stop = threading.Event()
    jobs: list[asyncio.Future[None]] = []
    try:
        await call_gateway(client, listener)
        await call_gateway(client, speaker)
        for caller in (listener, speaker):
            await caller.wait_connected()
            await caller.wait_channel_open()
        listener.send(
            {"type": "text", "text": "please repeat this long sentence about the rain in spain"}
        )
        async with asyncio.timeout(10):  # the listener's answer is playing
            while sum(f.rms > 300 for f in listener.frames[-10:]) < 5:
                await asyncio.sleep(0.02)
        while (job := POOL.submit(keep_decoding, stop)) is not None:
            jobs.append(job)
        assert len(jobs) == POOL.max_jobs
        busy_from = asyncio.get_running_loop().time()
        speaker.mic.play_pcm(recording(tmp_path, "what time is it now", rate_hz=WEBRTC_RATE_HZ))
        error = await speaker.wait_message(type="error", limit_s=10)
        busy_until = speaker.message_time(error)
        assert error["code"] == RECOGNIZER_BUSY
        assert error["fatal"] is False
        times = [f.at for f in listener.frames if busy_from <= f.at <= busy_until]
        intervals = np.diff(times)
        assert len(intervals) >= 50  # the answer played all along
        assert max(intervals) < 0.25, sorted(intervals)[-5:]
        print(  # the figure for docs/benchmarks.md, with -s
            f"busy pool: {len(intervals)} intervals, {int(sum(intervals > GAP_S))} over "
            f"{GAP_S * 1000:.0f} ms, max {max(intervals) * 1000:.0f} ms"
        )
        stop.set()
        await asyncio.gather(*jobs)
        assert speaker.pc.connectionState == "connected"  # the call went on
    finally:
        stop.set()
        await asyncio.gather(*jobs, return_exceptions=True)
        await listener.close()
        await speaker.close()
