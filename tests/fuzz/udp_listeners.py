"""UDP listeners a test owns on loopback, counting what the gateway sends them.

A hostile offer names candidate addresses; the gateway's ICE agent then sends STUN
connectivity checks there. Listeners on 127.0.0.x (any address in 127/8 is this
machine) stand in for the victims: each counts the datagrams and bytes it receives,
and how many were STUN binding requests. Never answers. Standard library only.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

STUN_MAGIC_COOKIE = 0x2112A442
_BINDING_REQUEST = 0x0001


@dataclass
class Received:
    """What one listener got."""

    packets: int = 0
    bytes: int = 0
    stun_requests: int = 0
    usernames: set[int] = field(default_factory=set)
    """Lengths of the STUN USERNAME attributes seen (the caller's ufrag travels there)."""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, received: Received) -> None:
        self.received = received

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.received.packets += 1
        self.received.bytes += len(data)
        if len(data) >= 20:
            kind, _, cookie = struct.unpack_from("!HHL", data)
            if kind == _BINDING_REQUEST and cookie == STUN_MAGIC_COOKIE:
                self.received.stun_requests += 1
                self.received.usernames.add(_username_length(data))


def _username_length(data: bytes) -> int:
    at = 20
    while at + 4 <= len(data):
        kind, length = struct.unpack_from("!HH", data, at)
        if kind == 0x0006:  # USERNAME
            return int(length)
        at += 4 + (length + 3) // 4 * 4
    return 0


class UdpListeners:
    """`count` listeners on 127.0.0.2, .3, ... (`per_address` ports each)."""

    def __init__(self) -> None:
        self.addresses: list[tuple[str, int]] = []
        self.received: dict[tuple[str, int], Received] = {}
        self._transports: list[asyncio.DatagramTransport] = []

    @classmethod
    async def open(cls, count: int, per_address: int = 100) -> UdpListeners:
        listeners = cls()
        loop = asyncio.get_running_loop()
        try:
            for i in range(count):
                host = f"127.0.0.{2 + i // per_address}"
                received = Received()
                transport, _ = await loop.create_datagram_endpoint(
                    lambda r=received: _Protocol(r),  # type: ignore[misc]
                    local_addr=(host, 0),
                    family=socket.AF_INET,
                )
                port = transport.get_extra_info("sockname")[1]
                listeners._transports.append(transport)
                listeners.addresses.append((host, port))
                listeners.received[(host, port)] = received
        except BaseException:
            listeners.close()
            raise
        return listeners

    def candidate_lines(self, start: int = 0, stop: int | None = None) -> Iterator[str]:
        """`a=candidate` lines naming listeners `start` to `stop`, one each."""
        for n, (host, port) in enumerate(self.addresses[start:stop], start=start):
            yield f"a=candidate:{n} 1 udp {2130706431 - n} {host} {port} typ host"

    @property
    def packets(self) -> int:
        return sum(r.packets for r in self.received.values())

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.received.values())

    @property
    def stun_requests(self) -> int:
        return sum(r.stun_requests for r in self.received.values())

    def probed(self) -> list[tuple[str, int]]:
        """Listeners that got anything, in the order they were opened."""
        return [a for a in self.addresses if self.received[a].packets]

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()
