"""Who gets a connection to the public HTTP server, and for how long it may dawdle.

aiohttp closes idle keep-alive connections (`keepalive_timeout`) but bounds neither how
long a request head may take nor how many connections are open, and asyncio's accept
loop, once descriptors run out, logs a traceback per failed `accept()` and multiplies
its own retry timers (measured on Python 3.11: 78 errors in the first second, 640 a
second after 8 s; the issue saw 174 MB of log a minute). So the gateway accepts on
its listening sockets itself (`Listener`) and hands each connection to aiohttp's
protocol (`web.Server` is a protocol factory by design) behind a thin wrapper the
`ConnectionGuard` watches:

- at most `max_connections` are open: a new one past it first closes the longest
  idle one; when none is idle it is answered `503` + `Retry-After` and closed;
- at most `max_idle` are idle, meaning they have not delivered a complete request:
  new, between requests, or still sending a head or a body. Past it the longest idle
  one is closed, so a flood of silent or dribbling sockets cannot keep a prompt
  request (`/healthz`) out;
- a request head must be complete within `header_timeout_s` of the connection
  opening, or on a keep-alive connection of the head's first byte;
- `accept()` out of descriptors closes the longest idle connections, pauses
  accepting for `ACCEPT_PAUSE_S` and says so at most once per `LOG_INTERVAL_S`.

Bodies (`signaling.read_body`) and idle keep-alive connections (aiohttp) are timed
elsewhere; a request in progress, such as an upgraded WebSocket, is never cut here.
May import asyncio, the stdlib, aiohttp's public web API and `errors`; knows nothing
of the gateway's routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import PROBLEM_JSON_TYPE, AtCapacity, error_reply

logger = logging.getLogger(__name__)

#: Connections taken per wake-up of a listening socket before other work runs
#: (asyncio's own accept loop takes its backlog, 100 by default).
ACCEPT_BATCH = 64
#: How long accepting pauses when `accept()` finds no descriptor: long enough for
#: the connections just closed to give theirs back (they do on the next loop turn),
#: short enough that a prompt client waits in the kernel's backlog, not for a timeout.
ACCEPT_PAUSE_S = 0.1
#: Idle connections closed to free descriptors when `accept()` finds none: a batch's
#: worth. Measured under RLIMIT_NOFILE 256 with caps set above it and 1,000 idle
#: connections, /healthz answered again after 6.3 s shedding 16 per 0.25 s pause,
#: after 1.2 s shedding 64 per 0.1 s.
SHED_ON_EXHAUSTION = ACCEPT_BATCH
#: At most one log line per this for each kind of refusal (cap reached, accept failed).
LOG_INTERVAL_S = 30.0
#: The Retry-After a refused connection is told (seconds).
REFUSED_RETRY_AFTER_S = 1
_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


@dataclass(frozen=True, slots=True)
class GuardLimits:
    max_connections: int
    max_idle: int
    header_timeout_s: float


@dataclass(slots=True)
class GuardCounts:
    """What the guard did since it started (tests and operators read these)."""

    refused: int = 0
    """Connections answered 503 and closed: the cap was full of requests in progress."""
    evicted: int = 0
    """Idle connections closed to make room for a new one."""
    slow_heads: int = 0
    """Connections closed because a request head took longer than `header_timeout_s`."""
    accept_failures: int = 0
    """`accept()` calls that failed (out of descriptors, mostly)."""


class RateLimitedLog:
    """One log line per `interval_s` for a recurring condition, counting the rest."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._next_at = 0.0
        self._suppressed = 0

    def due(self) -> int | None:
        """None: stay quiet; else log now, mentioning how many were not logged."""
        now = time.monotonic()
        if now < self._next_at:
            self._suppressed += 1
            return None
        self._next_at = now + self._interval_s
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed


class _GuardedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, and what the guard knows of it."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self.transport: asyncio.Transport | None = None
        self.request: web.BaseRequest | None = None
        self.head_timer: asyncio.TimerHandle | None = None
        self.released = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._guard._opened(self)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.request is None and self.head_timer is None:
            self._guard._head_started(self)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard._release(self)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def is_idle(self) -> bool:
        """No complete request yet: none in progress, or one whose body is still coming."""
        return self.request is None or not self.request.content.is_eof()


class ConnectionGuard:
    """The caps and the head timer over every connection of one server process."""

    def __init__(self, limits: GuardLimits, protocol_factory: Callable[[], asyncio.Protocol]):
        self.limits = limits
        self.counts = GuardCounts()
        self._factory = protocol_factory
        self._open = 0
        #: Idle connections, longest idle first (a dict keeps insertion order).
        self._idle: dict[_GuardedConnection, None] = {}
        self._by_transport: dict[asyncio.BaseTransport, _GuardedConnection] = {}
        self._refusals_log = RateLimitedLog()
        self._sheddings_log = RateLimitedLog()
        self._slow_heads_log = RateLimitedLog()

    @property
    def open_connections(self) -> int:
        return self._open

    def admit(self) -> _GuardedConnection | None:
        """Make room for a just-accepted connection; None: refuse it (the cap is full
        of requests in progress)."""
        if self._open >= self.limits.max_connections and not self.shed(1):
            self.counts.refused += 1
            if (suppressed := self._refusals_log.due()) is not None:
                logger.warning(
                    "%d connections open, none idle: refusing new ones with 503 "
                    "(%d refusals not logged)", self._open, suppressed,
                )  # fmt: skip
            return None
        if len(self._idle) >= self.limits.max_idle:
            self.shed(1)
        self._open += 1
        return _GuardedConnection(self, self._factory())

    def shed(self, count: int) -> int:
        """Close up to `count` idle connections, longest idle first; how many closed."""
        closed = 0
        while closed < count and self._idle:
            conn = next(iter(self._idle))
            if not conn.is_idle():  # its body has arrived since: a request in progress
                del self._idle[conn]
                continue
            self.counts.evicted += 1
            self._drop(conn)
            closed += 1
        if closed and (suppressed := self._sheddings_log.due()) is not None:
            logger.info(
                "closing the longest idle connections to make room (%d open, %d idle; "
                "%d more not logged)", self._open, len(self._idle), suppressed,
            )  # fmt: skip
        return closed

    def release(self, conn: _GuardedConnection) -> None:
        """A connection that never got going (its transport could not be made)."""
        self._release(conn)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks the connection busy while its request is handled (a WebSocket: for
        as long as it is open); idle again once the handler returns."""
        conn = self._by_transport.get(request.transport) if request.transport else None
        if conn is None:
            return await handler(request)
        self._request_started(conn, request)
        try:
            return await handler(request)
        finally:
            conn.request = None
            if not conn.released:
                self._idle.pop(conn, None)
                self._idle[conn] = None  # idle from now: the youngest

    def _opened(self, conn: _GuardedConnection) -> None:
        assert conn.transport is not None
        self._by_transport[conn.transport] = conn
        self._idle[conn] = None
        self._head_started(conn)

    def _head_started(self, conn: _GuardedConnection) -> None:
        loop = asyncio.get_running_loop()
        conn.head_timer = loop.call_later(self.limits.header_timeout_s, self._head_overdue, conn)

    def _head_overdue(self, conn: _GuardedConnection) -> None:
        conn.head_timer = None
        if conn.request is None and not conn.released:
            self.counts.slow_heads += 1
            if (suppressed := self._slow_heads_log.due()) is not None:
                logger.info(
                    "closing connections whose request head took over %g s "
                    "(%d more not logged)", self.limits.header_timeout_s, suppressed,
                )  # fmt: skip
            self._drop(conn)

    def _request_started(self, conn: _GuardedConnection, request: web.Request) -> None:
        conn.request = request
        if conn.head_timer is not None:
            conn.head_timer.cancel()
            conn.head_timer = None
        if request.content.is_eof():  # no body to wait for: busy now
            self._idle.pop(conn, None)

    def _drop(self, conn: _GuardedConnection) -> None:
        transport = conn.transport
        self._release(conn)
        if transport is not None:
            transport.abort()

    def _release(self, conn: _GuardedConnection) -> None:
        if conn.released:
            return
        conn.released = True
        self._open -= 1
        self._idle.pop(conn, None)
        if conn.transport is not None:
            self._by_transport.pop(conn.transport, None)
        if conn.head_timer is not None:
            conn.head_timer.cancel()
            conn.head_timer = None


def refusal_bytes() -> bytes:
    """The whole HTTP answer to a connection refused at the cap: 503, the gateway's
    problem details (RFC 9457), `Retry-After`, `Connection: close`."""
    reply = error_reply(
        AtCapacity("too many connections; retry later", retry_after_s=REFUSED_RETRY_AFTER_S)
    )
    body = json.dumps(reply.http_body()).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        f"Content-Type: {PROBLEM_JSON_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Retry-After: {reply.retry_after_s}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class Listener:
    """Accepts on one listening socket for the guard; pauses when out of descriptors.

    With an `ssl_context` each connection does its TLS handshake before aiohttp (and
    the guard's head timer) sees it, bounded by `header_timeout_s` (a handshake that
    dawdles is a head that dawdles). A connection refused at the cap is closed without
    the 503: over TLS that answer would cost the handshake the cap is refusing."""

    def __init__(
        self,
        sock: socket.socket,
        guard: ConnectionGuard,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._sock = sock
        self._guard = guard
        self._ssl = ssl_context
        self._loop = asyncio.get_running_loop()
        self._connecting: set[asyncio.Task[object]] = set()
        self._resume: asyncio.TimerHandle | None = None
        self._failures_log = RateLimitedLog()
        self._refusal = refusal_bytes()

    def start(self) -> None:
        self._sock.setblocking(False)
        self._loop.add_reader(self._sock.fileno(), self._accept)

    async def stop(self) -> None:
        """Stop accepting and close the listening socket (this process's copy)."""
        if self._resume is not None:
            self._resume.cancel()
        self._loop.remove_reader(self._sock.fileno())
        for task in self._connecting:
            task.cancel()
        await asyncio.gather(*self._connecting, return_exceptions=True)
        self._sock.close()

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._accept_failed(exc)
                return
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        conn = self._guard.admit()
        if conn is None:
            if self._ssl is None:
                with contextlib.suppress(OSError):
                    sock.send(self._refusal)
            sock.close()
            return
        handshake_s = self._guard.limits.header_timeout_s if self._ssl is not None else None
        task = self._loop.create_task(
            self._loop.connect_accepted_socket(
                lambda: conn, sock, ssl=self._ssl, ssl_handshake_timeout=handshake_s
            ),
            name="http/accept",
        )
        self._connecting.add(task)
        task.add_done_callback(lambda done: self._connected(done, conn, sock))

    def _connected(
        self, task: asyncio.Task[object], conn: _GuardedConnection, sock: socket.socket
    ) -> None:
        self._connecting.discard(task)
        if task.cancelled() or task.exception() is not None:
            logger.debug("an accepted connection could not be set up: %r", task)
            self._guard.release(conn)
            sock.close()

    def _accept_failed(self, exc: OSError) -> None:
        """Out of descriptors (or another accept() failure): free some, pause, say so
        once in a while, never a traceback per attempt."""
        self._guard.counts.accept_failures += 1
        shed = self._guard.shed(SHED_ON_EXHAUSTION) if exc.errno in _OUT_OF_DESCRIPTORS else 0
        self._loop.remove_reader(self._sock.fileno())
        self._resume = self._loop.call_later(ACCEPT_PAUSE_S, self._resume_accepting)
        if (suppressed := self._failures_log.due()) is not None:
            logger.warning(
                "accept() failed: %s; closed %d idle connections, pausing %.2f s "
                "(%d open; %d more failures not logged)",
                exc.strerror or exc, shed, ACCEPT_PAUSE_S, self._guard.open_connections,
                suppressed,
            )  # fmt: skip

    def _resume_accepting(self) -> None:
        self._resume = None
        self._loop.add_reader(self._sock.fileno(), self._accept)
