"""A headless caller in another network namespace, driven over JSON lines.

`python -m tests.support.netem.caller_process`, started under `ip netns exec`: the
parent sends `{"ice_servers": [...]}` (what `GET /ice-servers` handed out) and gets
`{"offer": sdp}`; it sends `{"answer": sdp}`, and the caller connects, says
something (a 0.8 s tone, as `test_end_to_end` does), waits for the agent's answer
and reports `{"route", "user_transcript", "loud_frames", "messages"}`. Bounded by
`CALL_TIMEOUT_S`; the parent kills it if it outlives that.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from gateway.audio.formats import WEBRTC_RATE_HZ
from gateway.audio.pcm import tone
from gateway.loadtest.headless_caller import HeadlessCaller
from gateway.rtc.peer_connection import route

CALL_TIMEOUT_S = 40.0
#: Frames louder than this are the agent's answer (its tone has amplitude 8000).
LOUD_RMS = 1000.0


async def _talk(caller: HeadlessCaller) -> dict[str, Any]:
    await caller.wait_connected(limit_s=20)
    await caller.wait_message(type="session", limit_s=10)
    caller.mic.play_pcm(tone(0.8, WEBRTC_RATE_HZ, 300.0, 6000))
    user = await caller.wait_message(type="transcript", role="user", final=True, limit_s=10)
    heard_from = len(caller.frames)
    await caller.wait_message(type="turn_complete", limit_s=10)
    await asyncio.sleep(1.0)
    return {
        "route": route(caller.pc),
        "user_transcript": user["text"],
        "loud_frames": sum(f.rms > LOUD_RMS for f in caller.frames[heard_from:]),
        "messages": [m.get("type") for m in caller.messages],
    }


async def _serve() -> None:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    servers = json.loads(await reader.readline())["ice_servers"]
    caller = HeadlessCaller(ice_servers=servers)
    try:
        print(json.dumps({"offer": await caller.offer()}), flush=True)
        await caller.accept(json.loads(await reader.readline())["answer"])
        async with asyncio.timeout(CALL_TIMEOUT_S):
            result = await _talk(caller)
        print(json.dumps({"result": result}), flush=True)
    finally:
        await caller.close()


def main() -> None:
    # No ICE restriction: the namespace has only lo (which aioice skips) and its veth.
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
