"""ICE host addresses for the netem harness (`gateway.ice` does this for the gateway).

aioice leaves 127.0.0.1 out of its host candidates and has no option for it; its
module-level `get_host_addresses` is the only seam (the core's `gateway.ice` uses the
same one). `restricted_ice` makes it return exactly the given IPv4 addresses (the
loopback, or a veth address in a namespace the test created) and restores it on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aioice.ice


@contextmanager
def restricted_ice(addresses: list[str]) -> Iterator[None]:
    original = aioice.ice.get_host_addresses

    def only_these(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return list(addresses) if use_ipv4 else []

    aioice.ice.get_host_addresses = only_these
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


@contextmanager
def loopback_ice() -> Iterator[None]:
    with restricted_ice(["127.0.0.1"]):
        yield
