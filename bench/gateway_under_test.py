"""A gateway process for CPU profiling, serving either the scripted ADK agent or a
fake agent at our own seam (`gateway.agent_api`), so ADK's share can be told apart.

    python -m bench.gateway_under_test --agent scripted --port 8090
    python -m bench.gateway_under_test --agent fake --port 8090 [--loop uvloop]

`fake` behaves like `scripted-live` (energy endpointer, a 1.5 s 440 Hz answer in
40 ms chunks at twice real time, barge-in) without ADK: the gateway's own cost only.
Prints `ready <pid>` once serving. Runs whichever `gateway` package is first on
PYTHONPATH, so `bench/profile_calls.py` can compare two code trees side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator

import numpy as np
from aiohttp import web

import gateway
from gateway.agent_api import AgentAudio, AgentEvent, AgentInterrupted, Modality, TurnComplete
from gateway.app import create_app
from gateway.audio.formats import AGENT_INPUT_RATE_HZ, AGENT_OUTPUT_RATE_HZ, SAMPLE_BYTES
from gateway.audio.pcm import tone
from gateway.config import load_settings
from gateway.models.scripted import (
    BARGE_IN_VOICE_S,
    CHUNK_S,
    END_OF_TURN_QUIET_S,
    MIN_VOICE_S,
    REPLY_S,
    VOICE_RMS,
)


class FakeScriptedSession:
    """`scripted-live`'s behaviour at the gateway's agent seam."""

    def __init__(self) -> None:
        self.session_id = uuid.uuid4().hex
        self._events: asyncio.Queue[AgentEvent | None] = asyncio.Queue()
        self._reply: asyncio.Task[None] | None = None
        self._voiced_s = self._quiet_s = 0.0
        self._answer = tone(REPLY_S, AGENT_OUTPUT_RATE_HZ)

    def send_audio(self, pcm: bytes) -> None:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        duration = len(samples) / AGENT_INPUT_RATE_HZ
        if len(samples) and float(np.sqrt(np.mean(samples**2))) >= VOICE_RMS:
            self._voiced_s += duration
            self._quiet_s = 0.0
            if self._replying() and self._voiced_s >= BARGE_IN_VOICE_S:
                self._stop_reply()
                self._events.put_nowait(AgentInterrupted())
            return
        self._quiet_s += duration
        if self._quiet_s >= END_OF_TURN_QUIET_S:
            if self._voiced_s >= MIN_VOICE_S:
                self._stop_reply()
                self._reply = asyncio.create_task(self._speak(), name="fake/reply")
            self._voiced_s = 0.0

    def send_text(self, text: str) -> None:
        pass

    async def events(self) -> AsyncIterator[AgentEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    def _replying(self) -> bool:
        return self._reply is not None and not self._reply.done()

    def _stop_reply(self) -> None:
        if self._reply is not None:
            self._reply.cancel()

    async def _speak(self) -> None:
        step = int(CHUNK_S * AGENT_OUTPUT_RATE_HZ) * SAMPLE_BYTES
        for offset in range(0, len(self._answer), step):
            self._events.put_nowait(AgentAudio(self._answer[offset : offset + step]))
            await asyncio.sleep(CHUNK_S / 2)
        self._events.put_nowait(TurnComplete())

    async def aclose(self) -> None:
        if self._reply is not None:
            self._reply.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reply
        self._events.put_nowait(None)


class FakeScriptedConnector:
    @contextlib.asynccontextmanager
    async def open_session(
        self, *, user_id: str, session_id: str | None, modality: Modality, call_id: str = ""
    ) -> AsyncIterator[FakeScriptedSession]:
        session = FakeScriptedSession()
        try:
            yield session
        finally:
            await session.aclose()


class StallMonitor:
    """The gateway loop's stalls: how late a 10 ms sleep wakes, served at /bench/stalls
    (worst and count over 40 ms since the last reading) so a run can tell whose loop
    stalled."""

    def __init__(self) -> None:
        self.worst_s = 0.0
        self.over_40ms = 0

    async def run(self, _: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self._watch(), name="bench/stalls")
        yield
        task.cancel()

    async def _watch(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.01)
            late = time.monotonic() - start - 0.01
            self.worst_s = max(self.worst_s, late)
            self.over_40ms += late > 0.04

    async def read(self, _: web.Request) -> web.Response:
        body = {"worst_ms": 1000 * self.worst_s, "over_40ms": self.over_40ms}
        self.worst_s, self.over_40ms = 0.0, 0
        return web.json_response(body)


def build_app(agent: str, port: int, max_calls: int) -> web.Application:
    app = _build_app(agent, port, max_calls)
    monitor = StallMonitor()
    app.cleanup_ctx.append(monitor.run)
    app.router.add_get("/bench/stalls", monitor.read)
    return app


def _build_app(agent: str, port: int, max_calls: int) -> web.Application:
    overrides: dict[str, object] = {
        "ice_addresses": "127.0.0.1",
        "port": port,
        "max_calls": max_calls,
        "session_url": "memory://",
        "log_level": "WARNING",
    }
    if agent == "fake":
        return create_app(load_settings(overrides, environ={}), FakeScriptedConnector())
    from gateway.app import add_adk_lifecycle, build_adk_connector

    overrides["agent"] = "gateway.agents.scripted:root_agent"
    settings = load_settings(overrides, environ={})
    connector = build_adk_connector(settings)
    app = create_app(settings, connector)
    add_adk_lifecycle(app, connector)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", choices=["scripted", "fake"], default="scripted")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--max-calls", type=int, default=500)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    app = build_app(args.agent, args.port, args.max_calls)

    def announce(_: str) -> None:
        print(f"ready {os.getpid()} {gateway.__file__}", flush=True)

    loop = None
    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=args.port, print=announce, loop=loop)


if __name__ == "__main__":
    main()
