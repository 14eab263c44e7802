"""A coturn relay of the test's own: Debian's `turnserver`, configured in a temporary
folder, optionally inside a network namespace, stopped (and waited for) at the end.

The configuration is the TURN REST one the gateway mints credentials for
(`use-auth-secret` + `static-auth-secret`, coturn's README.turnserver "TURN REST
API"), UDP and TCP on one port, no TLS/DTLS, no CLI, a bounded relay port range, its
user database and pid file in the folder, its log in `turnserver.log` there. Ready
once coturn logs that its relay servers are up (`READY_LINE`); a coturn that exits
first fails the test with its log. Nothing else on the machine is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
#: coturn 4.6 logs this once its listeners and relay threads exist.
READY_LINE = "Total General servers"
DEFAULT_PORT = 3478
#: Relay ports: few, so a test's allocations are easy to find in `ss` or the log.
RELAY_PORTS = (49160, 49200)


@dataclass
class TurnServer:
    listening_ips: tuple[str, ...]
    relay_ip: str
    port: int
    secret: str
    realm: str
    folder: Path
    namespace: str | None = None
    process: asyncio.subprocess.Process | None = field(default=None)

    @property
    def log(self) -> Path:
        return self.folder / "turnserver.log"

    def url(self, ip: str | None = None, transport: str | None = None) -> str:
        """`turn:<ip>:<port>` (the first listening IP unless told), `?transport=`."""
        url = f"turn:{ip or self.listening_ips[0]}:{self.port}"
        return f"{url}?transport={transport}" if transport else url

    def config(self) -> str:
        lines = [
            f"listening-port={self.port}",
            *(f"listening-ip={ip}" for ip in self.listening_ips),
            f"relay-ip={self.relay_ip}",
            f"min-port={RELAY_PORTS[0]}",
            f"max-port={RELAY_PORTS[1]}",
            "use-auth-secret",
            f"static-auth-secret={self.secret}",
            f"realm={self.realm}",
            "fingerprint",
            "no-cli",
            "no-tls",
            "no-dtls",
            "no-rfc5780",
            "no-software-attribute",
            "allow-loopback-peers" if self.relay_ip.startswith("127.") else "",
            f"userdb={self.folder / 'turndb'}",
            f"pidfile={self.folder / 'turnserver.pid'}",
            "log-file=stdout",
            "simple-log",
            "verbose",  # sessions and their usernames in the log
        ]
        return "".join(line + "\n" for line in lines if line)

    def prepare(self) -> None:
        """The folder and the configuration file in it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "turnserver.conf").write_text(self.config())

    async def start(self) -> None:
        binary = shutil.which("turnserver")
        assert binary, "coturn's turnserver is missing: run scripts/bootstrap --test"
        conf = self.folder / "turnserver.conf"
        prefix = ["ip", "netns", "exec", self.namespace] if self.namespace else []
        with self.log.open("ab") as sink:
            self.process = await asyncio.create_subprocess_exec(
                *prefix, binary, "-c", str(conf),
                stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink,
            )  # fmt: skip
        async with asyncio.timeout(START_TIMEOUT_S):
            while READY_LINE not in self.output():
                if self.process.returncode is not None:
                    raise AssertionError(f"turnserver exited at start: {self.output()[-2000:]}")
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.asynccontextmanager
async def turn_server(
    folder: Path,
    *,
    listening_ips: Sequence[str] = ("127.0.0.1",),
    relay_ip: str | None = None,
    secret: str = "test-turn-secret",
    realm: str = "gateway.test",
    port: int = DEFAULT_PORT,
    namespace: str | None = None,
) -> AsyncIterator[TurnServer]:
    """coturn listening on `listening_ips` (UDP and TCP `port`), relaying from
    `relay_ip` (default: the first listening IP), inside `namespace` if given."""
    server = TurnServer(
        tuple(listening_ips), relay_ip or listening_ips[0], port, secret, realm, folder, namespace
    )
    server.prepare()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
