"""Drain: stop taking calls, tell every live caller, let calls end or move, then stop.

What starts it: SIGTERM (the code serving the app awaits `Drain.run` after the
signal and before it stops accepting connections: `http_server` for one process,
`cluster.worker_process` for each worker, all of which the supervisor signals), or
an authenticated `POST /admin/drain`, which sends the gateway that same SIGTERM
(the supervisor's pid with workers, else its own; an app served in-process by a
test, with no signal owner, drains directly). Either way every worker drains and
the gateway exits 0 once done.

What it does, in order: new offers and WebSockets get 503 `draining` with
`Retry-After` (the edge middleware below, and `Admission` for requests already
past it); `/readyz` says 503 `draining`; every live call gets `going_away` on its
data channel and every WebSocket its protocol's equivalent, with the seconds left
(docs/protocol.md, docs/websocket.md, docs/bidi-demo.md); then it waits until no
session is left or `drain_timeout` has passed, closes the WebSockets still open
(1001) and returns: the server's clean-up hangs up the calls still there. A
second SIGTERM (or Ctrl-C) during the wait cuts it short.
May import aiohttp, the edge's auth, calls (manager, admission), the WebSocket
transport and the instruments; never aiortc or ADK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.auth.http import EDGE_AUTH_KEY
from gateway.calls.admission import Admission
from gateway.calls.manager import CallManager
from gateway.errors import Draining, GatewayError
from gateway.metrics.instruments import CALLS_REFUSED, DRAINING
from gateway.ops.readiness import Readiness
from gateway.websocket_transport import WebSocketTransport

logger = logging.getLogger(__name__)

#: How often the drain looks whether its sessions have all ended.
POLL_S = 0.1


class Drain:
    """One process's drain (see the module docstring); `run` it once."""

    def __init__(
        self,
        *,
        timeout_s: float,
        admission: Admission,
        readiness: Readiness,
        calls: CallManager,
        transports: Sequence[WebSocketTransport],
        on_draining: Callable[[], None] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self._admission = admission
        self._readiness = readiness
        self._calls = calls
        self._transports = transports
        self._on_draining = on_draining
        #: Sends the gateway its SIGTERM (set by whoever serves the app); None: an
        #: in-process app, which `POST /admin/drain` drains directly.
        self.request_stop: Callable[[], None] | None = None
        #: Signals that cut a running drain short (the serving code's own stop signals).
        self.cut_short_signals: tuple[signal.Signals, ...] = ()
        self._cut_short = asyncio.Event()
        self._running: asyncio.Task[None] | None = None

    @property
    def draining(self) -> bool:
        return self._admission.draining

    def begin(self) -> None:
        """Take no new calls from now on (idempotent)."""
        if self.draining:
            return
        self._admission.draining = True
        self._readiness.draining = True
        DRAINING.set(1)
        if self._on_draining is not None:
            self._on_draining()

    def start(self) -> asyncio.Task[None]:
        """Start draining (once); the drain's task, owned here."""
        if self._running is None:
            self._running = asyncio.create_task(self._run(), name="drain")
        return self._running

    async def run(self) -> None:
        """Drain: refuse, tell, wait for the sessions to end (bounded), close sockets."""
        await asyncio.shield(self.start())

    def cut_short(self) -> None:
        """Stop waiting for calls to end (a second stop signal)."""
        self._cut_short.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in self.cut_short_signals:
            loop.add_signal_handler(signum, self.cut_short)
        self.begin()
        deadline = loop.time() + self.timeout_s
        told = self._calls.going_away(self.timeout_s)
        for transport in self._transports:
            told += await transport.going_away(self.timeout_s)
        logger.info("draining: %d sessions told to move within %g s", told, self.timeout_s)
        while self._admission.in_use > 0 and not self._cut_short.is_set():
            left_s = deadline - loop.time()
            if left_s <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cut_short.wait(), min(POLL_S, left_s))
        if self._admission.in_use:
            logger.info("drain over: hanging up %d sessions", self._admission.in_use)
        else:
            logger.info("drained: no sessions left")
        await asyncio.gather(*(t.close_all() for t in self._transports))

    async def close(self) -> None:
        """Wait for a drain started by `POST /admin/drain` in an in-process app."""
        if self._running is not None:
            self.cut_short()
            await asyncio.gather(self._running, return_exceptions=True)
        if self.draining:
            DRAINING.set(0)  # the app is gone (a process drains once; tests make many)


DRAIN_KEY = web.AppKey("drain", Drain)


def _is_call_setup(request: web.Request) -> bool:
    """Requests that would start a session: offers and WebSocket upgrades."""
    if request.method == "POST":
        return request.path in ("/calls", "/offer")
    return request.method == "GET" and request.path.startswith("/ws/")


@web.middleware
async def call_setup_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """While draining, call set-ups get 503 `draining` + Retry-After before anything
    is read; every refused set-up is counted by its error code."""
    if not _is_call_setup(request):
        return await handler(request)
    try:
        if request.app[DRAIN_KEY].draining:
            raise Draining("the gateway is draining; call again (another instance answers)")
        return await handler(request)
    except GatewayError as exc:
        CALLS_REFUSED.labels(exc.code).inc()
        raise


async def post_drain(request: web.Request) -> web.Response:
    """`POST /admin/drain` (an admin key when auth is on): drain, then stop; 202."""
    await request.app[EDGE_AUTH_KEY].admin(request)
    drain = request.app[DRAIN_KEY]
    logger.info("drain requested over HTTP")
    if not drain.draining:  # a second request must not be a second signal (cut short)
        drain.begin()  # refuse from this very moment, before the signal arrives
        if drain.request_stop is not None:
            drain.request_stop()
        else:
            drain.start()
    return web.json_response({"state": "draining", "deadline_s": drain.timeout_s}, status=202)


def add_drain(app: web.Application, drain: Drain) -> None:
    """Serve `POST /admin/drain`, refuse call set-ups while draining, and wait for a
    drain in progress at clean-up."""
    app[DRAIN_KEY] = drain
    app.middlewares.append(call_setup_middleware)
    app.router.add_post("/admin/drain", post_drain)

    async def finish(_: web.Application) -> None:
        await drain.close()

    app.on_shutdown.insert(0, finish)
