"""Debian's HAProxy with docs/deploy/haproxy.cfg, in front of gateway instances, for one test.

`haproxy_in_front` renders the shipped template for a free loopback port and the
instances' ports (every value it replaces must be in the template, so the template
cannot drift away from what is tested), writes it to a private temporary folder and
runs `haproxy -f <file> -db` (foreground, no daemon) until the test is done
(SIGTERM, then SIGKILL; the folder removed). `up` waits until HAProxy's health
checks see every instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support import REPO_ROOT
from tests.support.gateway_process import free_port, stop, until_listening
from tests.support.nginx import render

TEMPLATE = REPO_ROOT / "docs" / "deploy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
START_TIMEOUT_S = 10.0
#: The template's example instances, in order.
TEMPLATE_SERVERS = ("10.0.0.11:8080", "10.0.0.12:8080", "10.0.0.13:8080")


@dataclass(frozen=True, slots=True)
class Haproxy:
    base: str
    """`http://127.0.0.1:<port>`"""
    log: Path


@contextlib.asynccontextmanager
async def haproxy_in_front(instance_ports: Sequence[int]) -> AsyncIterator[Haproxy]:
    """HAProxy on a free loopback port, round-robin over the instances (the
    template's three example servers become one line per instance)."""
    port = free_port()
    folder = _folder(port, instance_ports)
    config, log = folder / "haproxy.cfg", folder / "haproxy.log"
    try:
        with log.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                HAPROXY, "-f", str(config), "-db",
                stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink,
            )  # fmt: skip
        running = Haproxy(f"http://127.0.0.1:{port}", log)
        try:
            await until_listening(
                process, port, START_TIMEOUT_S, lambda: f"haproxy: {_output(log)}"
            )
            yield running
        finally:
            await stop(process, timeout_s=5.0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _folder(port: int, instance_ports: Sequence[int]) -> Path:
    """A private folder with the rendered configuration."""
    assert Path(HAPROXY).exists(), "haproxy is missing: run scripts/bootstrap --test"
    template = TEMPLATE.read_text()
    examples = [
        f"    server gw-{n} {server} check\n" for n, server in enumerate(TEMPLATE_SERVERS, 1)
    ]
    servers = "".join(
        f"    server gw-{n} 127.0.0.1:{instance} check\n"
        for n, instance in enumerate(instance_ports, 1)
    )
    substitutions = {"bind :8080": f"bind 127.0.0.1:{port}", "".join(examples): servers}
    folder = Path(tempfile.mkdtemp(prefix="haproxy-test-"))
    (folder / "haproxy.cfg").write_text(render(template, substitutions))
    return folder


def _output(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]
