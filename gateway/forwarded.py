"""Who a request is really from when reverse proxies stand in front (`--trusted-proxies`).

A request whose peer (the TCP connection's other end) is in one of the trusted
networks is handled as if from the client its proxies name: the right-most address
in `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends the
address it received the request from, so everything left of that hop was written by
the client or by proxies nobody vouches for: MDN's X-Forwarded-For page, "Security
and privacy concerns"), and the scheme `X-Forwarded-Proto` says for that hop. A
request from any other peer keeps its peer address and scheme whatever those headers
say: a client cannot choose the address its rate limits are counted against.
`X-Forwarded-Host` is never believed (the gateway needs the `Host` the browser sent,
which the proxy passes on: docs/deploy/nginx.conf).

The middleware hands the handlers `request.clone(remote=..., scheme=...)`, aiohttp's
own way to override them (its Server Reference, `BaseRequest.scheme` and `.remote`:
forwarding headers are not read since 2.3, call `clone()`), so
every consumer of `request.remote` sees the client: usage limits (`auth.http`,
`signaling`, `websocket_transport`), pending calls per source (`calls/`, forwarded
between workers with the offer) and, through `CLIENT_KEY`, the access log.

Why not aiohttp-remotes 1.4 (checked): `XForwardedStrict` wants an exact hop count
(a direct client, with no header, is refused 400); `XForwardedRelaxed` and
`XForwardedFiltered` believe the header from any peer (a direct client spoofs its
address), believe `X-Forwarded-Host`, and refuse the whole request 400 when any hop is
not a bare address (Squid's `unknown`, or `1.2.3.4:5678` from some load balancers),
even one left of the client, which nothing should read.

May import aiohttp and the stdlib.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: The client address the handlers saw, on the request aiohttp logs (the original:
#: the access log never sees the clone).
CLIENT_KEY = web.RequestKey("forwarded_client", str)
#: Schemes a trusted proxy may report.
SCHEMES = frozenset({"http", "https"})
#: Hops of X-Forwarded-For looked at; a longer chain is cut at the right-most ones
#: (a client's own header can be as long as the proxy lets a header be).
MAX_HOPS = 32


@dataclass(frozen=True, slots=True)
class ForwardedClient:
    address: str
    scheme: str | None
    """What `X-Forwarded-Proto` says for the client's hop (None: nothing usable)."""


class TrustedProxies:
    """The trusted networks and the rule that reads their headers."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in networks)

    def trusts(self, address: IPAddress | None) -> bool:
        return address is not None and any(address in net for net in self.networks)

    def client(
        self, peer: str, forwarded_for: Iterable[str], forwarded_proto: Iterable[str]
    ) -> ForwardedClient | None:
        """Who sent a request that `peer` delivered; None: `peer` is not trusted (the
        headers do not count)."""
        if not self.trusts(_address(peer)):
            return None
        hops = _values(forwarded_for)[-MAX_HOPS:]
        address, index = peer, -1  # index: of the client's hop, counted from the right
        for index, hop in enumerate(reversed(hops)):
            parsed = _address(hop)
            if parsed is None:  # a trusted proxy wrote garbage: the last good hop counts
                index -= 1
                break
            address = str(parsed)
            if not self.trusts(parsed):
                break
        return ForwardedClient(address, _scheme(_values(forwarded_proto), index))

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Handlers get the request as from its real client."""
        peer = request.remote
        found = None
        if peer is not None and self.networks:
            found = self.client(
                peer,
                request.headers.getall(hdrs.X_FORWARDED_FOR, ()),
                request.headers.getall(hdrs.X_FORWARDED_PROTO, ()),
            )
        if found is None:
            return await handler(request)
        request[CLIENT_KEY] = found.address
        if found.scheme is None:
            return await handler(request.clone(remote=found.address))
        return await handler(request.clone(remote=found.address, scheme=found.scheme))


def _values(headers: Iterable[str]) -> list[str]:
    """The comma-separated values of every occurrence of a header, in order."""
    return [part.strip() for header in headers for part in header.split(",")]


def _address(hop: str) -> IPAddress | None:
    """An address as proxies write it: bare, `[v6]`, `[v6]:port` or `v4:port`."""
    hop = hop.strip().strip('"')
    if hop.startswith("["):
        hop = hop[1:].partition("]")[0]
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    try:
        address = ipaddress.ip_address(hop)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return address


def _scheme(protos: list[str], index: int) -> str | None:
    """The scheme of hop `index` (from the right; -1: the peer's own, nothing said).
    A proxy that overwrites the header leaves one value: it stands for every hop."""
    if index < 0 or not protos:
        return None
    proto = (protos[-1 - index] if index < len(protos) else protos[0]).lower()
    return proto if proto in SCHEMES else None
