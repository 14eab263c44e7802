"""Debian's HAProxy as the load balancer in front of gateway instances, for failover tests.

`balancing` writes a minimal configuration (round robin, `/healthz` checks every
500 ms, a connection refused retried once and then sent to another instance:
`retries` + `option redispatch`, HAProxy 2.6 configuration manual, section 4) to a
private temporary folder and runs `haproxy -f <file> -db` (foreground) until the test
is done (SIGTERM, then SIGKILL; the folder removed). With the checks and the
redispatch, a re-offer sent right after an instance died reaches a live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.gateway_process import free_port, stop

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
START_TIMEOUT_S = 10.0

CONFIG = """\
global
    maxconn 256
defaults
    mode http
    option http-server-close
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 2
    option redispatch 1
frontend gateway
    bind 127.0.0.1:{port}
    default_backend instances
backend instances
    balance roundrobin
    option httpchk GET /healthz
    default-server inter 500ms fall 2 rise 1
{servers}
"""


@dataclass(frozen=True, slots=True)
class Balancer:
    base: str
    """`http://127.0.0.1:<port>`"""
    log: Path


@contextlib.asynccontextmanager
async def balancing(instance_ports: Sequence[int]) -> AsyncIterator[Balancer]:
    """HAProxy on a free loopback port in front of the instances on `instance_ports`."""
    port = free_port()
    folder, config, log = _folder(port, instance_ports)
    try:
        with log.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                HAPROXY, "-f", str(config), "-db",
                stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink,
            )  # fmt: skip
        try:
            await _until_listening(process, port, log)
            yield Balancer(f"http://127.0.0.1:{port}", log)
        finally:
            await stop(process, timeout_s=5.0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _folder(port: int, instance_ports: Sequence[int]) -> tuple[Path, Path, Path]:
    """A private folder with the configuration: (folder, configuration, log)."""
    assert Path(HAPROXY).exists(), "haproxy is missing: run scripts/bootstrap --test"
    folder = Path(tempfile.mkdtemp(prefix="haproxy-failover-"))
    servers = "\n".join(
        f"    server gw-{i} 127.0.0.1:{p} check" for i, p in enumerate(instance_ports)
    )
    config = folder / "haproxy.cfg"
    config.write_text(CONFIG.format(port=port, servers=servers))
    return folder, config, folder / "haproxy.log"


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def _until_listening(process: asyncio.subprocess.Process, port: int, log: Path) -> None:
    async with asyncio.timeout(START_TIMEOUT_S):
        while process.returncode is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError(f"haproxy exited with {process.returncode}: {_tail(log)}")
