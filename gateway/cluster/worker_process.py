"""One worker process of a multi-process gateway (`python -m gateway.cluster.worker_process`).

Started by the supervisor (`gateway.cluster.supervisor`) with a `WorkerSpec` in its environment:
serves the whole gateway app on the inherited listening socket(s) (through
`gateway.http_server`, as a one-process gateway does), its own calls to
its siblings on a unix socket, marks itself on the load board, then says `ready`
on the status pipe (or the reason it cannot start, and exits 1). SIGTERM
drains it (gateway/ops/drain.py), then stops it; its supervisor's death stops it
at once (PR_SET_PDEATHSIG on Linux, and a poll of the parent pid everywhere).
The composition root of a worker: imports everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from gateway.agent_bridge import AdkAgentConnector
from gateway.app import add_adk_lifecycle, create_app, load_adk_connector
from gateway.cluster.load_board import LoadBoard
from gateway.cluster.routing import LOCAL_CALLS_KEY, Membership, internal_app
from gateway.cluster.supervisor import SPEC_ENV, WorkerSpec, report_status
from gateway.config import Settings
from gateway.errors import StartupError
from gateway.http_server import AccessLogger, HttpLimits, PublicServer, tls_context
from gateway.logs import configure_logging
from gateway.ops.drain import DRAIN_KEY

logger = logging.getLogger(__name__)

#: Bound on in-flight HTTP requests at shutdown (calls are hung up separately).
HTTP_SHUTDOWN_TIMEOUT_S = 5.0
#: How often a worker checks that its supervisor is still there.
PARENT_POLL_S = 1.0
_PR_SET_PDEATHSIG = 1
#: The signal a worker gets when its supervisor dies: not SIGTERM, so the worker
#: knows it must clean up what the supervisor no longer can.
ORPHANED_SIGNAL = signal.SIGUSR1


def main() -> None:
    # Ctrl-C (and a closed terminal's SIGHUP) reach the whole process group; the
    # supervisor relays them as SIGTERM, so a worker stops once, gracefully.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if SPEC_ENV not in os.environ:
        sys.exit("gateway.cluster.worker_process is started by `python -m gateway --workers N`")
    spec = WorkerSpec.from_json(os.environ.pop(SPEC_ENV))
    _stop_with_parent()
    settings = Settings.model_validate(spec.settings)
    configure_logging(
        settings.log_level,
        f"%(asctime)s %(levelname)s [worker {spec.index}] %(name)s: %(message)s",
        settings.secret_values(),
    )
    try:
        connector = load_adk_connector(settings)
        asyncio.run(_serve(spec, settings, connector))
    except StartupError as exc:
        report_status(spec.status_fd, error=str(exc))
        sys.exit(1)


def _stop_with_parent() -> None:
    """Ask Linux to send `ORPHANED_SIGNAL` when the supervisor dies (elsewhere the
    parent-pid poll notices)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, ORPHANED_SIGNAL)


class _Stop:
    """Why the worker stops: asked (SIGTERM) or orphaned (its supervisor died)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.orphaned = False

    def __call__(self, *, orphaned: bool = False) -> None:
        self.orphaned |= orphaned
        self.event.set()


def _orphaned(stop: _Stop, cut_drain_short: Callable[[], None]) -> None:
    """The supervisor died: stop, without waiting out a drain in progress."""
    stop(orphaned=True)
    cut_drain_short()


async def _serve(spec: WorkerSpec, settings: Settings, connector: AdkAgentConnector) -> None:
    from gateway.adk.sessions import SessionStoreError

    board = LoadBoard(spec.board_fd, len(spec.shares))
    member = Membership(spec.index, spec.shares, Path(spec.socket_dir), board)
    app = create_app(settings, connector, member)
    add_adk_lifecycle(app, connector, session_retention_days=settings.session_retention_days)
    drain = app[DRAIN_KEY]  # POST /admin/drain: SIGTERM to the supervisor drains all
    drain.request_stop = functools.partial(os.kill, spec.parent_pid, signal.SIGTERM)
    drain.cut_short_signals = (signal.SIGTERM,)
    public = PublicServer(
        app,
        HttpLimits.from_settings(settings, member.share),
        shutdown_timeout_s=HTTP_SHUTDOWN_TIMEOUT_S,
    )
    private = web.AppRunner(
        internal_app(app[LOCAL_CALLS_KEY], max_offer_bytes=settings.max_offer_bytes),
        shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT_S,
        access_log_class=AccessLogger,
    )
    stop = _Stop()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop)
    loop.add_signal_handler(ORPHANED_SIGNAL, functools.partial(_orphaned, stop, drain.cut_short))
    socket_path = member.socket_path(spec.index)
    ssl_context = tls_context(settings)  # StartupError: reported, as any other
    try:
        try:
            await public.setup()  # checks the session store (worker 0 creates its tables)
        except SessionStoreError as exc:
            raise StartupError(str(exc)) from None
        await private.setup()
        await web.UnixSite(private, socket_path).start()
        await public.start([socket.socket(fileno=fd) for fd in spec.listen_fds], ssl_context)
        board.set_calls(spec.index, 0)
        board.set_serving(spec.index, os.getpid())
        report_status(spec.status_fd, ready=os.getpid())
        await _until_stopped(stop, spec.parent_pid)
        if not stop.orphaned:  # still accepting: /readyz says draining, offers get 503
            await drain.run()
    finally:
        board.clear(spec.index)  # siblings stop placing calls here
        await public.cleanup()  # stops accepting, hangs up this worker's calls
        await private.cleanup()
        with contextlib.suppress(OSError):
            os.unlink(socket_path)
        board.close()
    if stop.orphaned:  # nobody else will clean up: leave nothing behind
        shutil.rmtree(spec.socket_dir, ignore_errors=True)


async def _until_stopped(stop: _Stop, parent_pid: int) -> None:
    """Wait for SIGTERM or the supervisor's death."""
    while os.getppid() == parent_pid:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.event.wait(), PARENT_POLL_S)
        if stop.event.is_set():
            break
    else:
        stop(orphaned=True)
    if stop.orphaned:
        logger.warning("the supervisor (pid %d) is gone; stopping", parent_pid)


if __name__ == "__main__":
    main()
