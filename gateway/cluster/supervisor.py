"""The supervisor of a multi-process gateway: one worker process per core, kept running.

`run_workers` opens the HTTP listening socket(s) once (so a port in use fails here,
with a clear message) and starts `settings.workers` processes (`gateway.cluster.worker_process`),
each a whole gateway app with its own event loop, all accepting on the inherited
socket: an idle worker's loop accepts first, so connections lean towards free cores.
Worker 0 starts alone and checks (creating) the session store before its siblings
start, so they never race to create its tables. A worker that fails to start stops
the gateway with the worker's reason; one that dies later is logged and restarted,
at most `MAX_RESTARTS` times in `RESTART_WINDOW_S` before the gateway gives up.
SIGINT/SIGTERM/SIGHUP stop every worker gracefully (calls hung up), bounded by
`STOP_TIMEOUT_S`; workers also stop by themselves when this process dies.

Also the worker's start-up contract (`WorkerSpec`, the status pipe). Stays light: imports
settings, the load board and the stdlib, never aiohttp, aiortc or ADK.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway.cluster.load_board import LoadBoard
from gateway.config import Settings
from gateway.errors import StartupError

logger = logging.getLogger(__name__)

#: Environment variable carrying a worker's `WorkerSpec` (JSON).
SPEC_ENV = "ADK_GATEWAY_WORKER_SPEC"
#: Agent import, session store check and socket set-up of one worker.
WORKER_START_TIMEOUT_S = 60.0
#: A worker's graceful stop: calls hung up (5 s bound each, in parallel), agent closed.
STOP_TIMEOUT_S = 15.0
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
RESTART_DELAY_S = 1.0
LISTEN_BACKLOG = socket.SOMAXCONN


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker process needs from its supervisor."""

    index: int
    shares: tuple[int, ...]
    parent_pid: int
    listen_fds: tuple[int, ...]
    board_fd: int
    status_fd: int
    socket_dir: str
    settings: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        raw = json.loads(text)
        return cls(
            **{**raw, "shares": tuple(raw["shares"]), "listen_fds": tuple(raw["listen_fds"])}
        )


def report_status(status_fd: int, **status: object) -> None:
    """A worker tells its supervisor `ready=<pid>` or `error=<reason>` (one JSON line)."""
    with contextlib.suppress(OSError):  # the supervisor is gone: nobody to tell
        os.write(status_fd, json.dumps(status).encode() + b"\n")


def run_workers(settings: Settings) -> None:
    """Serve with `settings.workers` worker processes until SIGINT/SIGTERM.

    Raises `StartupError` when the gateway cannot start."""
    workers = min(settings.workers, settings.max_calls)
    if workers < settings.workers:
        logger.info("max_calls %d: starting %d workers, not %d", settings.max_calls, workers,
                    settings.workers)  # fmt: skip
    if settings.session_url.startswith("memory"):
        logger.warning(
            "session_url memory:// keeps each worker's conversations to itself: "
            "a session_id may be unknown to the worker a later call lands on"
        )
    shares = split_capacity(settings.max_calls, workers)
    sockets = listen(settings.host, settings.port)
    board = LoadBoard.create(workers)
    try:
        with tempfile.TemporaryDirectory(prefix="adk-gateway-") as socket_dir:
            supervisor = Supervisor(settings, shares, sockets, board, Path(socket_dir))
            asyncio.run(supervisor.run())
    finally:
        board.close()
        for sock in sockets:
            sock.close()


def split_capacity(max_calls: int, workers: int) -> tuple[int, ...]:
    """Each worker's share of `max_calls`, as equal as integers allow."""
    base, extra = divmod(max_calls, workers)
    return tuple(base + (1 if i < extra else 0) for i in range(workers))


def listen(host: str, port: int) -> list[socket.socket]:
    """Listening TCP sockets on every address `host` names, for the workers to share.

    Raises `StartupError` when the port is taken or the address is not this host's."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc}") from None
    sockets: list[socket.socket] = []
    for family, _, _, _, address in dict.fromkeys(infos):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            sock.listen(LISTEN_BACKLOG)
        except OSError as exc:
            sock.close()
            for opened in sockets:
                opened.close()
            raise StartupError(f"cannot listen on {host}:{port}: {exc}") from None
        port = port or sock.getsockname()[1]  # port 0: every address gets the first pick
        sockets.append(sock)
    return sockets


class Supervisor:
    """Starts the workers, restarts the ones that die, stops them all on a signal."""

    def __init__(
        self,
        settings: Settings,
        shares: tuple[int, ...],
        sockets: list[socket.socket],
        board: LoadBoard,
        socket_dir: Path,
    ) -> None:
        self._settings = settings
        self._shares = shares
        self._sockets = sockets
        self._board = board
        self._socket_dir = socket_dir
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, stop.set)
        keepers: list[asyncio.Task[None]] = []
        stopped = asyncio.create_task(stop.wait(), name="supervisor/stop")
        try:
            started = asyncio.create_task(self._start_all(), name="supervisor/start")
            await asyncio.wait([started, stopped], return_when=asyncio.FIRST_COMPLETED)
            if not started.done():  # a signal while starting: stop what started
                started.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await started
                return
            started.result()  # StartupError
            self._announce()
            keepers = [
                asyncio.create_task(self._keep_running(i), name=f"supervisor/worker-{i}")
                for i in range(len(self._shares))
            ]
            await asyncio.wait([stopped, *keepers], return_when=asyncio.FIRST_COMPLETED)
            for keeper in keepers:
                if keeper.done():
                    keeper.result()  # StartupError: a worker keeps dying
        finally:
            self._stopping = True
            for task in [stopped, *keepers]:
                task.cancel()
            await asyncio.gather(stopped, *keepers, return_exceptions=True)
            await self._stop_all()

    def _announce(self) -> None:
        host, port = self._sockets[0].getsockname()[:2]
        logger.info(
            "serving on %s://%s:%d (agent %s, %d workers, up to %d calls)",
            "http" if self._settings.certfile is None else "https",
            host if ":" not in host else f"[{host}]",
            port,
            self._settings.agent,
            len(self._shares),
            sum(self._shares),
        )

    async def _start_all(self) -> None:
        """Worker 0 first (it prepares the session store), then the rest together."""
        await self._start(0)
        try:
            async with asyncio.TaskGroup() as group:
                for index in range(1, len(self._shares)):
                    group.create_task(self._start(index), name=f"supervisor/start-{index}")
        except* StartupError as failed:
            raise failed.exceptions[0] from None

    async def _start(self, index: int) -> None:
        """Start worker `index` and wait until it serves; `StartupError` if it cannot."""
        read_fd, write_fd = os.pipe()
        spec = WorkerSpec(
            index=index,
            shares=self._shares,
            parent_pid=os.getpid(),
            listen_fds=tuple(s.fileno() for s in self._sockets),
            board_fd=self._board.fd,
            status_fd=write_fd,
            socket_dir=str(self._socket_dir),
            settings=self._settings.model_dump(mode="json"),
        )
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cluster.worker_process",
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(*spec.listen_fds, spec.board_fd, write_fd),
                env={**os.environ, SPEC_ENV: spec.to_json()},
            )  # fmt: skip
        finally:
            os.close(write_fd)
        self._processes[index] = process
        try:
            line = await asyncio.wait_for(_first_line(read_fd), WORKER_START_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            raise StartupError(
                f"worker {index} did not start within {WORKER_START_TIMEOUT_S:.0f} s"
            ) from None
        status = json.loads(line) if line.strip() else {}
        if "ready" in status:
            logger.info("worker %d serving (pid %d)", index, process.pid)
            return
        await process.wait()
        reason = status.get("error") or f"worker {index} exited with status {process.returncode}"
        raise StartupError(reason)

    async def _keep_running(self, index: int) -> None:
        """Restart worker `index` whenever it dies, until it dies too often."""
        deaths: collections.deque[float] = collections.deque()
        while True:
            process = self._processes[index]
            status = await process.wait()
            if self._stopping:
                return
            self._board.clear(index)
            now = time.monotonic()
            deaths.append(now)
            while deaths[0] < now - RESTART_WINDOW_S:
                deaths.popleft()
            if len(deaths) > MAX_RESTARTS:
                raise StartupError(
                    f"worker {index} died {len(deaths)} times in {RESTART_WINDOW_S:.0f} s; "
                    "stopping the gateway"
                )
            logger.error("worker %d (pid %d) exited with status %s; restarting",
                         index, process.pid, status)  # fmt: skip
            await asyncio.sleep(RESTART_DELAY_S)
            try:
                await self._start(index)
            except StartupError as exc:
                logger.error("worker %d did not restart: %s", index, exc)

    async def _stop_all(self) -> None:
        """SIGTERM to every worker (graceful), SIGKILL to those still there after
        `STOP_TIMEOUT_S`."""
        running = [p for p in self._processes.values() if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        waits = [process.wait() for process in running]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), STOP_TIMEOUT_S)
        except TimeoutError:
            for process in running:
                if process.returncode is None:
                    logger.warning("worker pid %d did not stop; killing it", process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.gather(*(process.wait() for process in running))
        for index in self._processes:
            self._board.clear(index)


async def _first_line(read_fd: int) -> bytes:
    """The first line a worker writes on its status pipe (b"" if it exits first)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(read_fd, "rb", buffering=0)  # owned (and closed) by the transport
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        return await reader.readline()
    finally:
        transport.close()
