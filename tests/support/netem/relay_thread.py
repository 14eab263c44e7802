"""The relay on its own event loop in its own thread: a network that keeps time.

With the relay on the same event loop as the peers, a stall of that loop (a loaded
machine: 2 cores shared by many processes) also stalls the "network", and packets it
should have delivered arrive after the receiver's hold timer: an artefact of the test
set-up, not loss. Here the relay's timers run on their own loop; the interface is
`UdpRelay`'s (addresses, logs), with `drained()` and `aclose()` usable from the
caller's loop. `aclose()` stops the loop, closes both sockets and joins the thread
(bounded by `JOIN_TIMEOUT_S`).
"""

from __future__ import annotations

import asyncio
import threading

from tests.support.netem.relay import LOOPBACK, Addr, DirectionLog, Impairment, UdpRelay

CLEAN = Impairment()

JOIN_TIMEOUT_S = 5.0


class RelayThread:
    def __init__(
        self, uplink: Impairment = CLEAN, downlink: Impairment = CLEAN, host: str = LOOPBACK
    ) -> None:
        self._args = (uplink, downlink, host)
        self._ready = threading.Event()
        self._relay: UdpRelay | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="netem-relay", daemon=True)

    async def start(self) -> RelayThread:
        self._thread.start()
        if not await asyncio.to_thread(self._ready.wait, JOIN_TIMEOUT_S) or self._relay is None:
            raise RuntimeError(f"the relay thread did not start: {self._failure!r}")
        return self

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported through start()
            self._failure = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        uplink, downlink, host = self._args
        self._stop = asyncio.Event()
        relay = await UdpRelay(uplink=uplink, downlink=downlink, host=host).start()
        try:
            self._relay = relay
            self._ready.set()
            await self._stop.wait()
        finally:
            await relay.aclose()

    @property
    def relay(self) -> UdpRelay:
        assert self._relay is not None
        return self._relay

    @property
    def caller_side(self) -> Addr:
        return self.relay.caller_side

    @property
    def gateway_side(self) -> Addr:
        return self.relay.gateway_side

    @property
    def caller_addr(self) -> Addr | None:
        return self.relay.caller_addr

    @caller_addr.setter
    def caller_addr(self, addr: Addr) -> None:
        self.relay.caller_addr = addr

    @property
    def gateway_addr(self) -> Addr | None:
        return self.relay.gateway_addr

    @gateway_addr.setter
    def gateway_addr(self, addr: Addr) -> None:
        self.relay.gateway_addr = addr

    @property
    def uplink(self) -> DirectionLog:
        return self.relay.uplink

    async def drained(self, timeout_s: float = 2.0) -> None:
        if not await asyncio.to_thread(self.relay.idle.wait, timeout_s):
            raise TimeoutError("the relay still has datagrams in flight")

    async def aclose(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, JOIN_TIMEOUT_S)
