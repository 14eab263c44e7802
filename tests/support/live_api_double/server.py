"""The Live API double: a TLS websocket server speaking BidiGenerateContent.

Wire facts it reproduces (google-genai 2.34, `live.py` / `_live_converters.py`):
- path `/ws/google.ai.generativelanguage.{v1alpha|v1beta}.GenerativeService.BidiGenerateContent`,
  API key in the `x-goog-api-key` header; any other path gets HTTP 404;
- the client's first frame is `{"setup": {"model": "models/...", ...}}`, answered
  with `{"setupComplete": {}}`;
- a bad API key is refused after `setup` with close 1007 "API key not valid. Please
  pass a valid API key."; a model the generation does not serve with close 1008
  "models/X is not found for API version v1alpha, or is not supported for
  bidiGenerateContent. Call ListMod..." (cut at the 123 bytes a close frame allows);
  a setup field the model does not accept with close 1007 "Request contains an
  invalid argument." (`generations`). As reported from the real service
  (adk-python #3964, #5075, python-genai #865, google-gemini client logs).

The double plays one model generation (`generations.GENERATION_MODELS`). Each
connection runs a behaviour (an async function of `LiveConnection`) chosen by its
index; `model.conversational` is the default. Records are kept for assertions.

Imports the standard library, websockets and the double's own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from typing import Any

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers

from tests.support.live_api_double.certs import SelfSignedCert
from tests.support.live_api_double.connection import LiveConnection
from tests.support.live_api_double.generations import (
    GENERATION_MODELS,
    Generation,
    refused_setting,
)
from tests.support.live_api_double.model import Behaviour, conversational
from tests.support.live_api_double.stalls import OwedReply, StallKind
from tests.support.live_api_double.wire import (
    BAD_KEY_CLOSE,
    INVALID_ARGUMENT_CLOSE,
    PATHS,
    check_path,
    unknown_model_close,
)

logger = logging.getLogger(__name__)


class LiveApiDouble:
    """The server. `async with LiveApiDouble(cert) as double:` then point a client at
    `double.base_url`, trusting `cert`. Set `behaviours[i]` to script connection i."""

    def __init__(
        self,
        cert: SelfSignedCert,
        *,
        accepted_api_keys: frozenset[str] | None = None,
        generation: Generation = "3.8",
        known_models: frozenset[str] | None = None,
    ) -> None:
        self.cert = cert
        #: None accepts any key; otherwise others are refused like a bad key.
        self.accepted_api_keys = accepted_api_keys
        #: Which model's setup rules and tool-call behaviour the double plays.
        self.generation: Generation = generation
        #: Model ids served; any other is refused with 1008 (default: the generation's).
        self.known_models = (
            frozenset({GENERATION_MODELS[generation]}) if known_models is None else known_models
        )
        #: When set, every new connection is refused with this close after `setup`.
        self.refuse_all: tuple[int, str] | None = None
        self.behaviours: dict[int, Behaviour] = {}
        self.default_behaviour: Behaviour = conversational
        self.connections: list[LiveConnection] = []
        #: Every `setup` body received, accepted or refused, in order.
        self.setups: list[dict[str, Any]] = []
        #: Conversation snapshots by resumption handle (shared by all connections).
        self.sessions: dict[str, list[tuple[str, str]]] = {}
        #: Replies cut by a `mid_reply` stall, by the handles that resume them.
        self.owed_replies: dict[str, OwedReply] = {}
        #: Stalls to serve, consumed in order by whichever connection reaches one.
        self.stall_plan: list[StallKind] = []
        #: Every close sent in answer to a `setup` (bad key, unknown model, setting).
        self.refused: list[tuple[int, str]] = []
        #: The setup rule behind each 1007 invalid-argument refusal, in order.
        self.refused_settings: list[str] = []
        #: Exceptions raised by behaviours (a broken script, not a client's fault).
        self.behaviour_errors: list[BaseException] = []
        self.new_connection = asyncio.Condition()
        self._counter = itertools.count(1)
        self._server: Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def next_handle(self) -> int:
        return next(self._counter)

    async def __aenter__(self) -> LiveApiDouble:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            ssl=self.cert.server_context(),
            process_request=check_path,
            ping_interval=None,
            max_size=16 * 1024 * 1024,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def wait_connections(self, count: int, timeout_s: float = 10.0) -> LiveConnection:
        """Wait until `count` connections completed setup; return the last one."""
        async with asyncio.timeout(timeout_s), self.new_connection:
            await self.new_connection.wait_for(lambda: len(self.connections) >= count)
        return self.connections[count - 1]

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        headers: Headers = ws.request.headers
        conn = LiveConnection(
            index=len(self.connections),
            double=self,
            ws=ws,
            api_version=PATHS[ws.request.path.split("?")[0]],
            api_key=headers.get("x-goog-api-key"),
        )
        try:
            setup = json.loads(await ws.recv())["setup"]
        except (websockets.ConnectionClosed, KeyError, ValueError):
            await ws.close(1007, "Invalid JSON payload received.")
            return
        self.setups.append(setup)
        refusal = self._refusal(conn.api_key, setup, conn.api_version)
        if refusal is not None:
            self.refused.append(refusal)
            await ws.close(*refusal)
            return
        await self._serve(conn, setup)

    def _refusal(
        self, key: str | None, setup: dict[str, Any], version: str
    ) -> tuple[int, str] | None:
        if self.refuse_all is not None:
            return self.refuse_all
        if not key or (self.accepted_api_keys is not None and key not in self.accepted_api_keys):
            return BAD_KEY_CLOSE
        model = str(setup.get("model", ""))
        if model.removeprefix("models/") not in self.known_models:
            return unknown_model_close(model, version)
        rule = refused_setting(self.generation, setup)
        if rule is not None:
            self.refused_settings.append(rule)
            return INVALID_ARGUMENT_CLOSE
        return None

    async def _serve(self, conn: LiveConnection, setup: dict[str, Any]) -> None:
        conn.start(setup)
        await conn.send({"setupComplete": {}})
        async with self.new_connection:
            self.connections.append(conn)
            self.new_connection.notify_all()
        behaviour = self.behaviours.get(conn.index, self.default_behaviour)
        script = asyncio.create_task(behaviour(conn), name=f"live-double/{conn.index}")
        try:
            await self._receive(conn)
        finally:
            conn.closed.set()
            script.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await self._reap(conn, script)

    async def _receive(self, conn: LiveConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in conn.ws:
                close = conn.on_frame(json.loads(raw))
                if close is not None:
                    await conn.close(*close)
                    return

    async def _reap(self, conn: LiveConnection, script: asyncio.Task[None]) -> None:
        try:
            await script
        except Exception as exc:  # the boundary of a test's script: record, log once
            self.behaviour_errors.append(exc)
            logger.exception("live double: behaviour of connection %d failed", conn.index)
