"""Which local addresses ICE may use, and which ICE servers: one documented place.

aioice gathers host candidates from every interface except 127.0.0.1 and has no
option to choose them. `restrict_host_addresses` makes it gather, process-wide, on
the configured addresses only (127.0.0.1 in tests; chosen interfaces in production),
through the one seam in `rtc/_aioice.py` (guarded by `tests/test_seams.py`).
`host_addresses` turns the setting into addresses: IPs as given, interface names
(`eth0`) as that interface's addresses (read with ifaddr, as aioice does), and, when
nothing is configured, every interface, with loopback too when the gateway serves
HTTP on loopback only: then every caller is on this host, and a caller offering only
127.0.0.1 (the load tester, a local script) must find a candidate it can reach.

`announce_public_address` is NAT 1:1 ("announced IP" in mediasoup, `NAT1To1IPs` in
Pion): a gateway behind a cloud NAT puts its public address in the host candidates
of its answers, so callers send to the address that reaches it.

`ice_servers` builds aiortc's configuration from settings only: with `iceServers`
unset aiortc would fall back to Google's public STUN server, which a gateway with
no network must never try to reach.

Imports aiortc and `rtc._aioice`; nothing else from the project.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator, Sequence

import ifaddr
from aiortc import RTCConfiguration, RTCIceServer

from gateway.rtc import _aioice
from gateway.rtc.ice_servers import GATEWAY_TURN_USER, IceServers


class UnknownInterfaceError(ValueError):
    """An ICE address setting names neither an IP nor an interface of this host."""


def host_addresses(
    configured: Sequence[str],
    *,
    serving_loopback_only: bool,
    adapters: Sequence[ifaddr.Adapter] | None = None,
) -> tuple[str, ...]:
    """The addresses ICE gathers on (empty: aioice's default, every interface but
    loopback). `adapters` defaults to this host's interfaces."""
    if not configured and not serving_loopback_only:
        return ()
    if adapters is None:
        adapters = list(ifaddr.get_adapters())
    by_name = {adapter.nice_name: _usable_ips(adapter) for adapter in adapters}
    if not configured:
        everything = [ip for ips in by_name.values() for ip in ips]
        return tuple(dict.fromkeys(everything))  # loopback included: its callers are local
    chosen: list[str] = []
    for entry in configured:
        try:
            chosen.append(str(ipaddress.ip_address(entry)))
        except ValueError:
            if entry not in by_name:
                known = ", ".join(sorted(by_name)) or "none"
                raise UnknownInterfaceError(
                    f"ice_addresses: {entry!r} is neither an IP address nor an interface "
                    f"of this host (interfaces: {known})"
                ) from None
            chosen.extend(by_name[entry])
    return tuple(dict.fromkeys(chosen))


def gathering_addresses(chosen: Sequence[str]) -> tuple[str, ...]:
    """The addresses ICE really gathers on for `host_addresses`' result: those, or
    (empty) every interface's but loopback, as aioice does by default."""
    if chosen:
        return tuple(chosen)
    found = [ip for adapter in ifaddr.get_adapters() for ip in _usable_ips(adapter)]
    return tuple(a for a in dict.fromkeys(found) if not ipaddress.ip_address(a).is_loopback)


def _usable_ips(adapter: ifaddr.Adapter) -> list[str]:
    """An interface's IPv4 addresses and its IPv6 ones but link-local (which need a
    scope id no remote candidate carries)."""
    found = []
    for ip in adapter.ips:
        if isinstance(ip.ip, str):
            found.append(ip.ip)
        elif not ipaddress.IPv6Address(ip.ip[0]).is_link_local:
            found.append(ip.ip[0])
    return found


def announce_public_address(sdp: str, public_ip: str) -> str:
    """`sdp` with every host candidate of `public_ip`'s family announcing
    `public_ip` instead of its local address (the port is kept: a 1:1 NAT maps it)."""
    family = ipaddress.ip_address(public_ip).version
    lines = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=candidate:"):
            parts = line.split(" ")
            # a=candidate:<foundation> <component> <transport> <priority> <address>
            #   <port> typ <type> ... (RFC 8839 §5.1)
            if len(parts) >= 8 and parts[7] == "host" and _family(parts[4]) == family:
                parts[4] = public_ip
                line = " ".join(parts)
        lines.append(line)
    return "\r\n".join(lines)


def _family(address: str) -> int | None:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return None  # an mDNS name


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
    return gateway_rtc_configuration(IceServers(ice_server_urls))


def gateway_rtc_configuration(servers: IceServers) -> RTCConfiguration:
    """aiortc's configuration for one of the gateway's own peer connections: exactly
    `servers`, TURN credentials minted now (with `iceServers` unset aiortc would reach
    for Google's public STUN server, which a gateway with no network must never try)."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s.url, username=s.username, credential=s.credential)
            for s in servers.for_user(GATEWAY_TURN_USER)
        ]
    )
