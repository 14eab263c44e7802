"""A Redis server of the test's own: `redis-server` (Debian's package) on a free
loopback port, keeping nothing on disk, stopped (and waited for) when the block ends.

The machine may run a Redis of its own; tests never use it (a fresh Debian machine
has none, and a shared one holds other data). `stop()` / `start()` in the middle of
a test simulate the store going away and coming back on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.gateway_process import free_port

START_TIMEOUT_S = 10.0


@dataclass
class RedisServer:
    port: int
    folder: Path
    process: asyncio.subprocess.Process | None = field(default=None)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing: run scripts/bootstrap --test"
        self.process = await asyncio.create_subprocess_exec(
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.folder),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with asyncio.timeout(START_TIMEOUT_S):
            while not await self._answers():
                assert self.process.returncode is None, "redis-server exited at start"
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.kill()
        await self.process.wait()

    async def _answers(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return (await reader.readline()).startswith(b"+PONG")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def redis_server(folder: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(free_port(), folder)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
