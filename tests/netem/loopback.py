"""Loopback-only ICE for the netem harness until `gateway.ice` is on this branch.

aioice leaves 127.0.0.1 out of its host candidates and has no option for it; its
module-level `get_host_addresses` is the only seam (the core's `gateway.ice` uses the
same one). Restored on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aioice.ice


@contextmanager
def loopback_ice() -> Iterator[None]:
    original = aioice.ice.get_host_addresses

    def loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback_only
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original
