"""`python -m gateway` (or another module) as a real process on a free loopback port.

For tests and benchmarks that need the gateway exactly as an operator starts it:
the command line, the environment, several worker processes. The process starts in
the checkout, with ICE on loopback; `serving` returns once `/healthz` answers (and,
with `workers`, once that many workers serve), fails with the process's log if it
exits first, and stops it (SIGTERM, then SIGKILL) on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import REPO_ROOT

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
#: The gateway's `--drain-timeout` unless a test sets its own.
DRAIN_TIMEOUT_S = 1.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class GatewayProcess:
    base: str
    """`http://127.0.0.1:<port>` (`https://` with `tls`)"""
    process: asyncio.subprocess.Process
    log: Path | None
    """Where its output goes (None: discarded)."""
    tls: ssl.SSLContext | None = None
    """The client context that trusts its certificate (None: plain HTTP)."""

    def session(self, **kwargs: Any) -> aiohttp.ClientSession:
        """An HTTP client for it (trusting its certificate)."""
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.tls or True), **kwargs)

    async def get(self, path: str) -> dict[str, Any]:
        """GET `path`, which must answer 200 with JSON."""
        async with self.session() as http, http.get(self.base + path) as response:
            assert response.status == 200
            body: dict[str, Any] = await response.json()
            return body

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""


@contextlib.asynccontextmanager
async def serving(
    *args: str,
    module: str = "gateway",
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    workers: int | None = None,
    port: int | None = None,
    open_files: int | None = None,
    loopback_ice: bool = True,
    namespace: str | None = None,
    host: str = "127.0.0.1",
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[GatewayProcess]:
    """`python -m <module> <args> --port <free>` with `env` (default: this process's),
    until it serves. `--host 127.0.0.1 --ice-addresses 127.0.0.1 --drain-timeout 1`
    come first for the gateway itself (`loopback_ice=False`: no `--ice-addresses`,
    the default a user gets); `args` can override them. `open_files` sets the process's
    RLIMIT_NOFILE (soft and hard), as `ulimit -n` would. `namespace`: run it inside
    that network namespace (`ip netns exec`, root only), serving on `host` there
    (which this namespace must reach). With `tls` (a client context trusting the
    certificate given as `--certfile`) it is reached over HTTPS."""
    port = port or free_port()
    argv = [*args, "--port", str(port)]
    if module == "gateway":
        ice = ["--ice-addresses", "127.0.0.1"] if loopback_ice else []
        # A test that leaves with calls up must not wait out a 30 s drain.
        argv = ["--host", host, *ice, "--drain-timeout", str(DRAIN_TIMEOUT_S), *argv]
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    sink = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND) if log else None
    try:
        process = await asyncio.create_subprocess_exec(
            *prefix, sys.executable, "-m", module, *argv,
            cwd=REPO_ROOT, env=dict(env) if env is not None else None,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink if sink is not None else asyncio.subprocess.DEVNULL,
            stderr=sink if sink is not None else asyncio.subprocess.DEVNULL,
            preexec_fn=None if open_files is None else _limit_open_files(open_files),
        )  # fmt: skip
    finally:
        if sink is not None:
            os.close(sink)
    scheme = "http" if tls is None else "https"
    gateway = GatewayProcess(f"{scheme}://{host}:{port}", process, log, tls)
    try:
        await _until_serving(gateway, workers)
        yield gateway
    finally:
        await stop(process)


def _limit_open_files(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


async def _until_serving(gateway: GatewayProcess, workers: int | None) -> None:
    async with gateway.session() as http, asyncio.timeout(STARTUP_TIMEOUT_S):
        while gateway.process.returncode is None:
            with contextlib.suppress(aiohttp.ClientError, ValueError):
                async with http.get(f"{gateway.base}/healthz") as response:
                    if response.status == 200 and (
                        workers is None or (await response.json()).get("workers") == workers
                    ):
                        return
            await asyncio.sleep(0.2)
    raise AssertionError(
        f"the gateway exited with {gateway.process.returncode}: {gateway.output()[-2000:]}"
    )


async def until_listening(
    process: asyncio.subprocess.Process, port: int, timeout_s: float, why: Callable[[], str]
) -> None:
    """Return once something accepts TCP connections on 127.0.0.1:`port`; fail with
    `why()` (the process's log, say) if `process` exits first or `timeout_s` passes."""
    async with asyncio.timeout(timeout_s):
        while process.returncode is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError(f"exited with {process.returncode}: {why()}")


async def stop(process: asyncio.subprocess.Process, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL after `timeout_s`; returns once the process is reaped."""
    if process.returncode is None:
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
