"""Raw HTTP clients for tests of the server's edge: connections timed from the moment
they opened, that send nothing, dribble a byte at a time, or just hold a descriptor.

For tests that need what a well-behaved client library never does (aiohttp's client
sends a whole request at once); `healthz_s` is the prompt client next to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator

import aiohttp


class Client:
    """One raw TCP connection, timed from the moment it opened."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.opened_at = time.monotonic()
        self.received = b""

    @classmethod
    async def open(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes, *, every_s: float = 0.0) -> None:
        """All at once, or a byte every `every_s`; stops quietly once cut off."""
        chunks = [data] if not every_s else [data[i : i + 1] for i in range(len(data))]
        with contextlib.suppress(ConnectionError):
            for chunk in chunks:
                self.writer.write(chunk)
                await self.writer.drain()
                if every_s:
                    await asyncio.sleep(every_s)

    async def response_head(self) -> bytes:
        """Read one response's status line and headers (and its short body)."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE)
        if length:
            await self.reader.readexactly(int(length.group(1)))
        return head

    async def closed_at(self, limit_s: float = 30.0) -> float:
        """Seconds from opening until the server closed the connection."""
        async with asyncio.timeout(limit_s):
            with contextlib.suppress(ConnectionError):
                while chunk := await self.reader.read(65536):
                    self.received += chunk
        return time.monotonic() - self.opened_at

    def is_open(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def clients(port: int, count: int) -> AsyncIterator[list[Client]]:
    opened = [await Client.open(port) for _ in range(count)]
    try:
        yield opened
    finally:
        await asyncio.gather(*(c.close() for c in opened))


async def cut_while_sending(client: Client, data: bytes, every_s: float) -> float:
    """Dribble `data` until the server cuts the connection; when it did."""
    sending = asyncio.create_task(client.send(data, every_s=every_s))
    try:
        return await client.closed_at()
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending


async def healthz_s(base: str) -> float:
    """GET /healthz on a new connection; seconds to a 200."""
    started = time.monotonic()
    connector = aiohttp.TCPConnector(force_close=True)
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(f"{base}/healthz", timeout=timeout) as response,
    ):
        assert response.status == 200
        assert (await response.json())["status"] == "ok"
    return time.monotonic() - started


async def open_flood(port: int, count: int) -> list[socket.socket]:
    """`count` connections that never send a byte (blocking connects, in a thread:
    the kernel completes them from its backlog whether or not the gateway accepts)."""

    def connect_all() -> list[socket.socket]:
        flood = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            flood.append(sock)
        return flood

    return await asyncio.to_thread(connect_all)


def close_flood(flood: list[socket.socket]) -> None:
    for sock in flood:
        sock.close()
