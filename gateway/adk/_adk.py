"""Every place the gateway reaches into google-adk's internals, and nowhere else.

1. The live request queue's backlog (`LiveRequestQueue._queue`): ADK's queue is
   unbounded, and a stalled upstream must not grow memory forever, so the bridge
   refuses caller audio past a bound (`agent_bridge._BoundedLiveRequestQueue`); the
   backlog is only visible on the private asyncio queue.
2. The Live API client of a `Gemini` model (`Gemini._live_api_client`): the
   pre-answer check (`adk/preflight.py`) opens one Live connection with exactly the
   client (credentials, endpoint, TLS settings) ADK's own `connect()` will use.

`shape_problems()` lists what no longer matches in the installed ADK;
`tests/test_seams.py` fails on any. Imports google.adk and google.genai only.
"""

from __future__ import annotations

import asyncio
import inspect

from google.adk.agents.live_request_queue import LiveRequestQueue
from google.adk.models.google_llm import Gemini
from google.genai import Client

_QUEUE_ATTR = "_queue"
_LIVE_CLIENT_ATTR = "_live_api_client"


def queued_requests(queue: LiveRequestQueue) -> int:
    """Requests (audio, content, activity signals) waiting for ADK to take them."""
    pending: asyncio.Queue[object] = getattr(queue, _QUEUE_ATTR)
    return pending.qsize()


def live_api_client(model: Gemini) -> Client:
    """The google-genai client `model.connect()` opens its Live sessions with."""
    client: Client = getattr(model, _LIVE_CLIENT_ATTR)
    return client


def shape_problems() -> list[str]:
    """What in the installed ADK no longer matches the touches above (empty: all do)."""
    problems = []
    queue_source = inspect.getsource(LiveRequestQueue)
    if f"self.{_QUEUE_ATTR}: asyncio.Queue[LiveRequest] = asyncio.Queue()" not in queue_source:
        problems.append("LiveRequestQueue no longer keeps its requests in an asyncio.Queue")
    if f"return await self.{_QUEUE_ATTR}.get()" not in queue_source:
        problems.append("LiveRequestQueue.get no longer reads that queue")
    if _LIVE_CLIENT_ATTR not in vars(Gemini):
        problems.append("Gemini has no _live_api_client any more")
    elif f"self.{_LIVE_CLIENT_ATTR}.aio.live.connect(" not in inspect.getsource(Gemini.connect):
        problems.append("Gemini.connect no longer opens its session with _live_api_client")
    return problems
