"""Which ICE candidates of a caller the gateway will send connectivity checks to.

aioice sends ~6 STUN checks to every remote candidate, whatever its address or port,
and the caller's ufrag travels in every check. Unbounded, an offer is a weapon: one
with a 30 KB ufrag plus 1,000 trickled candidates made the gateway send 170 MB of UDP
for 122 KB of HTTP (1,400x), and private, CGNAT and metadata addresses were probed
like any other. So, before aioice sees a candidate (offer and trickle alike):

- at most `max_candidates` distinct candidates per call, offer and trickle together;
  further ones are dropped and counted, not refused (a browser may list many);
- never link-local (cloud metadata), multicast, broadcast, unspecified or reserved
  addresses, nor any other special-purpose range (documentation, benchmarking, ...);
- private (10/8, 172.16/12, 192.168/16, fc00::/7), CGNAT (100.64/10) and loopback
  ranges only when configured (`allowed_networks`) or when one of the gateway's own
  ICE addresses is in that range (a LAN or loopback deployment); the composition root
  (`app.ice_policy`) counts the public IP among those and adds the gateway's TURN
  servers' addresses to `allowed_networks` (a caller's relay candidate there);
- ports below 1024 never (no caller's ICE agent uses them; services do);
- UDP, component 1 only (aioice has no ICE-TCP; RTCP is multiplexed);
- mDNS names (`<uuid>.local`: how browsers hide host addresses) when `allow_mdns`.

Ufrag and password lengths are bounded as RFC 8445 section 5.3 says (ufrag 4-256,
password 22-256 ice-chars); an offer outside them is refused (`InvalidSdp`).
The policy is the whole story only for addresses ICE is told about: a caller that
answers our checks from elsewhere is learned as peer-reflexive, which needs its
valid, authenticated STUN request first. Imports aiortc's candidate type and parser
and the project's errors only.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp

from gateway.errors import InvalidSdp

#: Candidates per call, offer and trickle together. A browser lists a host (mDNS),
#: a server-reflexive and a relay candidate per interface: 16 leave room for four
#: interfaces, and bound the STUN checks one offer can make the gateway send.
DEFAULT_MAX_CANDIDATES = 16
#: RFC 8445 section 5.3: ice-ufrag 4-256 and ice-pwd 22-256 ice-chars.
UFRAG_CHARS = (4, 256)
PWD_CHARS = (22, 256)
#: Ports below this belong to services, not to ICE agents.
MIN_PORT = 1024
_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")
_MDNS_NAME = re.compile(r"[A-Za-z0-9-]{1,63}\.local")  # aioice's own test

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Ranges a caller's candidate may point into only by configuration, or when the
#: gateway's own ICE addresses are there too.
OPT_IN_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "::1/128",
    )
)


def _never(ip: IPAddress) -> bool:
    """Addresses no configuration makes a caller's: link-local (cloud metadata at
    169.254.169.254), multicast, unspecified, reserved (255.255.255.255 and 240/4
    among them; IPv6's ::1 is "reserved" to Python, but it is loopback, opt-in)."""
    reserved = ip.is_reserved and not ip.is_loopback
    return ip.is_link_local or ip.is_multicast or ip.is_unspecified or reserved


def check_credentials(ufrag: str | None, pwd: str | None) -> None:
    """Raise `InvalidSdp` unless the ICE ufrag and password are as RFC 8445 sizes them."""
    for name, value, (low, high) in (("ufrag", ufrag, UFRAG_CHARS), ("pwd", pwd, PWD_CHARS)):
        if value is None or not low <= len(value) <= high or not _ICE_CHARS.fullmatch(value):
            raise InvalidSdp(f"ice-{name} must be {low}-{high} ice-chars (RFC 8445)")


@dataclass(frozen=True, slots=True)
class IcePolicy:
    """What candidates a call accepts; one per gateway, from settings."""

    max_candidates: int = DEFAULT_MAX_CANDIDATES
    allowed_networks: tuple[IPNetwork, ...] = ()
    allow_mdns: bool = True

    @classmethod
    def from_settings(
        cls,
        *,
        max_candidates: int,
        allowed_networks: Iterable[str],
        own_addresses: Iterable[str],
        allow_mdns: bool,
    ) -> IcePolicy:
        """The policy for a gateway whose ICE uses `own_addresses`: each opt-in range
        holding one of them is allowed, with the configured `allowed_networks`."""
        networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
        own = [_unmapped(ipaddress.ip_address(a)) for a in own_addresses]
        networks += [n for n in OPT_IN_NETWORKS if any(a in n for a in own)]
        return cls(max_candidates, tuple(dict.fromkeys(networks)), allow_mdns)

    def refusal(self, host: str, port: int, protocol: str, component: int) -> str | None:
        """Why a candidate is refused ("address", "port", "transport"), None if it is not."""
        if protocol.lower() != "udp" or component != 1:
            return "transport"
        if not MIN_PORT <= port <= 65535:
            return "port"
        try:
            ip = _unmapped(ipaddress.ip_address(host))
        except ValueError:
            return None if self.allow_mdns and _MDNS_NAME.fullmatch(host) else "address"
        if _never(ip):
            return "address"
        if any(ip in n for n in self.allowed_networks):
            return None
        return None if ip.is_global else "address"


def _unmapped(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) judged as the IPv4 it maps."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass
class CandidateBudget:
    """One call's candidates: the policy applied, the cap counted over offer and
    trickle together, drops counted by reason ("address", "port", "transport",
    "over_cap"; duplicates are ignored, as aioice would)."""

    policy: IcePolicy
    accepted: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    _seen: set[tuple[str, int]] = field(default_factory=set)

    def admit(self, line: str) -> RTCIceCandidate | None:
        """The candidate of an `a=candidate:` line (or its value) if it may reach ICE,
        else None; counts it. Raises `InvalidSdp` for a line that is not a candidate."""
        value = line.strip().removeprefix("a=").removeprefix("candidate:")
        try:
            candidate = candidate_from_sdp(value)
        except Exception:  # aiortc's parser fails in many ways; all are the client's
            raise InvalidSdp("invalid candidate line") from None
        key = (candidate.ip, candidate.port)
        if key in self._seen:
            return None
        reason = self.policy.refusal(
            candidate.ip, candidate.port, candidate.protocol, candidate.component
        )
        if reason is None and self.accepted >= self.policy.max_candidates:
            reason = "over_cap"
        if reason is not None:
            self.dropped[reason] += 1
            return None
        self._seen.add(key)
        self.accepted += 1
        return candidate

    def filter_sdp(self, sdp: str) -> str:
        """`sdp` without the candidate lines this budget refuses (line endings CRLF).

        Once a candidate is dropped, so is `a=end-of-candidates`: ICE then waits for
        the caller's own checks and pairs with the address they come from (peer
        reflexive) instead of failing at once for want of a candidate.
        """
        dropped = sum(self.dropped.values())
        kept = [
            line
            for line in sdp.splitlines()
            if not line.startswith("a=candidate:") or self.admit(line) is not None
        ]
        if sum(self.dropped.values()) > dropped:
            kept = [line for line in kept if line.strip() != "a=end-of-candidates"]
        return "".join(line + "\r\n" for line in kept)
