"""ICE host addresses for a stretch of the netem harness.

`gateway.rtc.ice.restrict_host_addresses` sets them process-wide (loopback for the whole
test session, see `tests/conftest.py`). A call across a namespace needs the caller's
candidates on the veth address for a while instead: `restricted_ice` swaps aioice's
`get_host_addresses` (the same seam `gateway.rtc.ice` uses) and restores whatever was
there before on exit.
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
