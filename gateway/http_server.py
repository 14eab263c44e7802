"""The public HTTP server: the gateway's app as the internet may reach it.

One place serves the app for both `python -m gateway` with one process (`serve`) and
each worker process of a multi-process gateway (`PublicServer`): aiohttp's runner
with the slow-client timeouts and an access log without secrets, behind the
`connection_guard` (caps, head timeout, accept loop). What aiohttp offers is used as
it is: `keepalive_timeout` (idle keep-alive connections), `lingering_time`, an
`access_log_class`, and its `web.Server` as the connection protocol factory.

What bounds what:
- a request head: `header_timeout_s` from the connection opening or, on a keep-alive
  connection, from the head's first byte (`connection_guard`);
- a request body: `body_timeout_s` from the head, then 408 (`signaling.read_body`);
- a keep-alive connection between requests: `idle_timeout_s` (aiohttp's
  `keepalive_timeout`);
- open and idle connections: `max_connections` and `max_idle_connections` per
  process (`connection_guard`), sized from RLIMIT_NOFILE unless set.

With `--certfile`/`--keyfile` the same sockets speak HTTPS (`tls`: the context,
loaded once per process; `connection_guard.Listener`: the handshake).

May import aiohttp, the stdlib, `config`, `connection_guard`, `forwarded`, `tls` and
the supervisor's `listen` (stdlib only); nothing of calls, aiortc or ADK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from gateway.config import Settings
from gateway.connection_guard import ConnectionGuard, GuardLimits, Listener, RateLimitedLog
from gateway.forwarded import CLIENT_KEY
from gateway.tls import server_context

logger = logging.getLogger(__name__)

#: Bound on in-flight requests at shutdown (calls are hung up separately).
SHUTDOWN_TIMEOUT_S = 5.0
#: After a response to a request whose body was not all read (413, 408, a handler
#: that did not want it), how long aiohttp keeps reading and discarding it so the
#: client sees the response rather than a reset. aiohttp's default, 10 s, would let a
#: client dribbling a body hold the connection 10 s past its 408.
LINGER_S = 1.0
#: Descriptors a process needs besides HTTP connections: stdio, the event loop, the
#: session store (SQLite, or a PostgreSQL pool), log files, /proc readings, the
#: workers' sockets to each other. An idle gateway has 8 open.
RESERVED_FDS = 64
#: Descriptors a live call holds: one UDP socket per address ICE gathers on (1 on
#: loopback, 2-4 on a typical host), a TURN allocation, the agent's upstream
#: connection (measured: 1 per call with ICE on loopback only).
FDS_PER_CALL = 6
#: Longest path the access log writes (a request line may be 8 KiB).
ACCESS_LOG_PATH_CHARS = 200
#: Path parameters that are personal data: the access log writes the route instead.
PERSONAL_PATH_PARAMS = frozenset({"user_id"})


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The timeouts and caps of one serving process."""

    header_timeout_s: float
    body_timeout_s: float
    idle_timeout_s: float
    max_connections: int
    max_idle_connections: int
    fd_limit: int
    """This process's RLIMIT_NOFILE (soft)."""
    fds_for_connections: int
    """What the limit leaves for connections once calls and the process have theirs."""

    @classmethod
    def from_settings(cls, settings: Settings, calls: int) -> HttpLimits:
        """`settings`' limits for a process that carries up to `calls` live calls;
        caps not set are sized from RLIMIT_NOFILE."""
        fd_limit = open_file_limit()
        reserve = min(RESERVED_FDS + FDS_PER_CALL * calls, fd_limit // 2)
        room = max(fd_limit - reserve, 1)
        max_connections = settings.max_connections or room
        max_idle = settings.max_idle_connections or max(max_connections // 2, 1)
        return cls(
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            idle_timeout_s=settings.idle_timeout_s,
            max_connections=max_connections,
            max_idle_connections=min(max_idle, max_connections),
            fd_limit=fd_limit,
            fds_for_connections=room,
        )


def open_file_limit() -> int:
    """This process's soft RLIMIT_NOFILE (unlimited counts as 2**20)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 2**20 if soft == resource.RLIM_INFINITY else soft


class AccessLogger(AbstractAccessLogger):
    """One line per request: client (the one a trusted proxy names, else the peer),
    method, path, status, bytes, seconds. Never the
    query string (session ids and tokens travel there), headers (Authorization,
    cookies, a Referer with its query) or a user id in the path."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %d %.3f',
            request.get(CLIENT_KEY) or request.remote or "-",
            request.method,
            loggable_path(request),
            response.status,
            response.body_length,
            time,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def loggable_path(request: web.BaseRequest) -> str:
    """The request's path without its query, its route where a path parameter is
    personal data, percent-encoded and cut to `ACCESS_LOG_PATH_CHARS`."""
    path = request.rel_url.raw_path
    if isinstance(request, web.Request):
        # Not routed (aiohttp answered a malformed request): `match_info` asserts
        # (or, under `python -O`, is None).
        with contextlib.suppress(AssertionError, AttributeError):
            match = request.match_info
            resource_ = match.route.resource
            if resource_ is not None and PERSONAL_PATH_PARAMS & match.keys():
                path = resource_.canonical
    path = quote(path, safe="/%:@!$&'()*+,;=-._~{}")
    if len(path) > ACCESS_LOG_PATH_CHARS:
        return path[:ACCESS_LOG_PATH_CHARS] + "..."
    return path


class QuietRepeats(logging.Filter):
    """Of the records `matches` picks, one per `interval_s` gets through, as one line
    (`summary` and how many were dropped), without its traceback."""

    def __init__(
        self, matches: Callable[[logging.LogRecord], bool], summary: str, interval_s: float
    ) -> None:
        super().__init__()
        self._matches = matches
        self._summary = summary
        self._log = RateLimitedLog(interval_s)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._matches(record):
            return True
        dropped = self._log.due()
        if dropped is None:
            return False
        record.msg = f"{self._summary} ({dropped} more not logged)"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


def _accept_out_of_resources(record: logging.LogRecord) -> bool:
    """asyncio's accept loop (the workers' private unix socket) out of descriptors:
    a traceback per attempt, and its retry timers multiply."""
    return str(record.msg).startswith("socket.accept() out of system resource")


def _malformed_request(record: logging.LogRecord) -> bool:
    """aiohttp answering 400 to a request it cannot parse logs a traceback at ERROR:
    a line of garbage buys ~600 bytes of log. The client's mistake, not ours."""
    error = record.exc_info[1] if record.exc_info else None
    return record.msg == "Error handling request from %s" and isinstance(error, HttpProcessingError)


#: Logger name, what to keep quiet, the line that stands for it.
_QUIET = [
    ("asyncio", _accept_out_of_resources, "socket.accept() out of system resource"),
    ("aiohttp.server", _malformed_request, "malformed requests answered 400"),
]
#: At most one line per this for each of `_QUIET`.
QUIET_INTERVAL_S = 30.0


def install_log_filters() -> None:
    """Once per process: the repeats an attacker (or an exhausted process) can cause
    become one line per `QUIET_INTERVAL_S`."""
    for name, matches, summary in _QUIET:
        target = logging.getLogger(name)
        if not any(isinstance(f, QuietRepeats) for f in target.filters):
            target.addFilter(QuietRepeats(matches, summary, QUIET_INTERVAL_S))


class PublicServer:
    """The app on the public listening sockets, guarded; a runner's lifecycle:
    `setup` (the app's start-up hooks), `start(sockets)`, `cleanup`."""

    def __init__(
        self,
        app: web.Application,
        limits: HttpLimits,
        *,
        shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S,
    ) -> None:
        self.limits = limits
        self._runner = web.AppRunner(
            app,
            shutdown_timeout=shutdown_timeout_s,
            keepalive_timeout=limits.idle_timeout_s,
            lingering_time=LINGER_S,
            access_log_class=AccessLogger,
        )
        guard_limits = GuardLimits(
            max_connections=limits.max_connections,
            max_idle=limits.max_idle_connections,
            header_timeout_s=limits.header_timeout_s,
        )
        self.guard = ConnectionGuard(guard_limits, self._new_protocol)
        # Outermost, so the connection counts as busy for the whole of its request.
        app.middlewares.insert(0, self.guard.middleware)
        self._listeners: list[Listener] = []

    async def setup(self) -> None:
        """Run the app's start-up hooks (they may raise: the session store check)."""
        install_log_filters()
        await self._runner.setup()

    async def start(
        self, sockets: list[socket.socket], ssl_context: ssl.SSLContext | None = None
    ) -> None:
        """Accept on `sockets` (already listening), over TLS with `ssl_context`, and
        say what the limits are."""
        for sock in sockets:
            listener = Listener(sock, self.guard, ssl_context)
            listener.start()
            self._listeners.append(listener)
        _log_limits(self.limits)

    async def cleanup(self) -> None:
        """Stop accepting, finish or cut the requests in flight, run the app's cleanup."""
        for listener in self._listeners:
            await listener.stop()
        self._listeners.clear()
        await self._runner.cleanup()

    def _new_protocol(self) -> asyncio.Protocol:
        """aiohttp's protocol for one connection (`web.Server` is its factory)."""
        server = self._runner.server
        assert server is not None, "setup() first"
        return server()


def _log_limits(limits: HttpLimits) -> None:
    logger.info(
        "http: up to %d connections, %d of them idle (RLIMIT_NOFILE %d); timeouts: "
        "head %g s, body %g s, idle %g s",
        limits.max_connections,
        limits.max_idle_connections,
        limits.fd_limit,
        limits.header_timeout_s,
        limits.body_timeout_s,
        limits.idle_timeout_s,
    )
    if limits.max_connections > limits.fds_for_connections:
        logger.warning(
            "max_connections %d is more than RLIMIT_NOFILE %d leaves for connections "
            "(%d): accept() may run out of descriptors; raise the limit (ulimit -n)",
            limits.max_connections,
            limits.fd_limit,
            limits.fds_for_connections,
        )


def serve(app: web.Application, settings: Settings) -> None:
    """`python -m gateway` with one process: serve `app` until SIGINT or SIGTERM.

    Raises `StartupError` when the port cannot be opened, and whatever the app's
    start-up hooks raise."""
    from gateway.cluster.supervisor import listen

    ssl_context = tls_context(settings)
    sockets = listen(settings.host, settings.port)
    try:
        asyncio.run(_serve(app, settings, sockets, ssl_context))
    finally:
        for sock in sockets:
            sock.close()


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS server context of `--certfile`/`--keyfile` (None: plain HTTP).

    Raises `StartupError` when they cannot serve."""
    if settings.certfile is None or settings.keyfile is None:
        return None
    return server_context(settings.certfile, settings.keyfile)


async def _serve(
    app: web.Application,
    settings: Settings,
    sockets: list[socket.socket],
    ssl_context: ssl.SSLContext | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = PublicServer(app, HttpLimits.from_settings(settings, settings.max_calls))
    try:
        await server.setup()
        await server.start(sockets, ssl_context)
        host, port = sockets[0].getsockname()[:2]
        logger.info(
            "serving on %s://%s:%d (agent %s)",
            "http" if ssl_context is None else "https",
            host if ":" not in host else f"[{host}]",
            port,
            settings.agent,
        )
        await stop.wait()
    finally:
        await server.cleanup()
