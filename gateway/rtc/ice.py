"""Which local addresses ICE may use, and which ICE servers: one documented place.

aioice gathers host candidates from every interface except 127.0.0.1 and has no
option to choose them; the only seam is its module-level `get_host_addresses`.
`restrict_host_addresses` replaces it, process-wide, with a function returning the
configured addresses (127.0.0.1 in tests; chosen interfaces in production). A test
(`tests/test_ice.py`) fails if aioice changes under this.

`ice_servers` builds aiortc's configuration from settings only: with `iceServers`
unset aiortc would fall back to Google's public STUN server, which a gateway with
no network must never try to reach.

May import aioice and aiortc; nothing from the project.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

_original_get_host_addresses = aioice.ice.get_host_addresses


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Make ICE gather host candidates only on `addresses` (empty: library default).

    Process-wide, because aioice reads it at gathering time for every connection.
    """
    if not addresses:
        aioice.ice.get_host_addresses = _original_get_host_addresses
        return
    chosen = [str(ipaddress.ip_address(a)) for a in addresses]

    def configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [
            a
            for a in chosen
            if (use_ipv4 and ipaddress.ip_address(a).version == 4)
            or (use_ipv6 and ipaddress.ip_address(a).version == 6)
        ]

    aioice.ice.get_host_addresses = configured_host_addresses


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
