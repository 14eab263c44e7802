"""Which local addresses ICE may use, and which ICE servers: one documented place.

aioice gathers host candidates from every interface except 127.0.0.1 and has no
option to choose them. `restrict_host_addresses` makes it gather, process-wide, on
the configured addresses only (127.0.0.1 in tests; chosen interfaces in production),
through the one seam in `rtc/_aioice.py` (guarded by `tests/test_seams.py`).

`ice_servers` builds aiortc's configuration from settings only: with `iceServers`
unset aiortc would fall back to Google's public STUN server, which a gateway with
no network must never try to reach.

Imports aiortc and `rtc._aioice`; nothing else from the project.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator, Sequence

from aiortc import RTCConfiguration, RTCIceServer

from gateway.rtc import _aioice


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Make ICE gather host candidates only on `addresses` (empty: library default).

    Process-wide, because aioice reads it at gathering time for every connection.
    """
    if not addresses:
        _aioice.set_host_addresses(None)
        return
    chosen = [str(ipaddress.ip_address(a)) for a in addresses]

    def configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [
            a
            for a in chosen
            if (use_ipv4 and ipaddress.ip_address(a).version == 4)
            or (use_ipv6 and ipaddress.ip_address(a).version == 6)
        ]

    _aioice.set_host_addresses(configured_host_addresses)


@contextlib.contextmanager
def host_addresses_restricted(addresses: Sequence[str]) -> Iterator[None]:
    """`restrict_host_addresses` for a block, then whatever was in place before."""
    previous = _aioice.set_host_addresses(None)
    restrict_host_addresses(addresses)
    try:
        yield
    finally:
        _aioice.set_host_addresses(previous)


def rtc_configuration(ice_server_urls: Sequence[str]) -> RTCConfiguration:
    """An aiortc configuration with exactly these ICE servers (none by default).

    URLs may carry credentials as `turn:user:password@host:port`.
    """
    servers: list[RTCIceServer] = []
    for url in ice_server_urls:
        scheme, _, rest = url.partition(":")
        if "@" in rest:
            creds, _, hostport = rest.rpartition("@")
            user, _, password = creds.partition(":")
            servers.append(
                RTCIceServer(urls=f"{scheme}:{hostport}", username=user, credential=password)
            )
        else:
            servers.append(RTCIceServer(urls=url))
    return RTCConfiguration(iceServers=servers)
