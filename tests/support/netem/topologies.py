"""Network namespaces where a caller reaches the gateway only one way (root needed).

`relay_topology`: the only path is a TURN relay.

```
  caller ns ──veth── turn ns ──veth── gateway ns ──veth── this namespace
  (caller_ip)        relay_ip on lo   (gateway_ip)         (signaling only: HTTP to
                     (the TURN server's                     the gateway's http_ip)
                      "public" address)
```

The caller and gateway namespaces each have one route besides their links: to the
TURN server's address (a /32 on the TURN namespace's loopback), through their veth.
The TURN namespace does not forward (a new namespace starts with forwarding off), so
no packet of the caller's can reach the gateway's address, nor the reverse: media
must go through the relay. The relay address is on 172.16/12, the links on
10.231/16: the gateway's ICE policy admits 10/8 (its own range) but must admit the
relay address for being its TURN server's.

`nat_topology`: the gateway behind a 1:1 NAT, as a cloud VM behind its public IP.

```
  caller ns ──veth── router ns ──veth── gateway ns ──veth── this namespace
  (caller_ip)        nftables:           (gateway_ip,         (signaling only)
                     public_ip <-> gateway_ip   private)
```

The router forwards, and rewrites with nftables: to `public_ip` becomes to
`gateway_ip` (DNAT, port kept), from `gateway_ip` becomes from `public_ip` (SNAT).
The caller routes only `public_ip` (a /32) to the router, so it cannot address the
gateway's private address at all; the gateway's default route is the router.

In both, the gateway's HTTP is reached from this namespace over a link of its own,
as signaling reaches a gateway behind a load balancer. Everything is removed in
`finally` (deleting a namespace removes its veth ends and their peers). Commands
are bounded by `netns.COMMAND_TIMEOUT_S`.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.support.netem.netns import COMMAND_TIMEOUT_S, _free_subnet, _run


@dataclass(frozen=True, slots=True)
class RelayTopology:
    caller_ns: str
    turn_ns: str
    gateway_ns: str
    caller_ip: str
    gateway_ip: str
    relay_ip: str
    """The TURN server's address, reachable from the caller's and gateway's namespaces."""
    http_ip: str
    """The gateway namespace's address on the signaling link to this namespace."""


def exec_prefix(namespace: str) -> list[str]:
    """Prefix a command with this to run it inside `namespace`."""
    return ["ip", "netns", "exec", namespace]


def can_send(namespace: str, address: str) -> bool:
    """Whether a UDP datagram from `namespace` to `address` can be sent at all
    (False: the kernel has no route, `sendto` fails with ENETUNREACH)."""
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "try:\n"
        f"    s.sendto(b'probe', ({address!r}, 9))\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    done = subprocess.run(
        [*exec_prefix(namespace), sys.executable, "-c", probe],
        capture_output=True, timeout=COMMAND_TIMEOUT_S,
    )  # fmt: skip
    return done.returncode == 0


def _link(tag: str, a_ns: str | None, b_ns: str) -> tuple[str, str]:
    """A veth /30 between namespace `a_ns` (None: this one) and `b_ns`; their IPs."""
    subnet = _free_subnet()
    a_ip, b_ip = (str(h) for h in subnet.hosts())
    a_if, b_if = f"ra{tag}", f"rb{tag}"
    _run("ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if)
    _run("ip", "link", "set", b_if, "netns", b_ns)
    if a_ns is not None:
        _run("ip", "link", "set", a_if, "netns", a_ns)
    a = ["ip", "-n", a_ns] if a_ns else ["ip"]
    _run(*a, "addr", "add", f"{a_ip}/30", "dev", a_if)
    _run(*a, "link", "set", a_if, "up")
    _run("ip", "-n", b_ns, "addr", "add", f"{b_ip}/30", "dev", b_if)
    _run("ip", "-n", b_ns, "link", "set", b_if, "up")
    return a_ip, b_ip


@dataclass(frozen=True, slots=True)
class NatTopology:
    caller_ns: str
    router_ns: str
    gateway_ns: str
    caller_ip: str
    gateway_ip: str
    """The gateway's private address (its `--ice-addresses`)."""
    public_ip: str
    """Its address as callers see it (its `--public-ip`)."""
    http_ip: str


def nat_ruleset(public_ip: str, private_ip: str) -> str:
    """1:1 NAT: `public_ip` stands for `private_ip`, both ways, ports kept."""
    return f"""table ip nat_one_to_one {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {public_ip} dnat to {private_ip}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {private_ip} snat to {public_ip}
    }}
}}
"""


@contextmanager
def _namespaces(*names: str) -> Iterator[None]:
    """Fresh namespaces (loopback up), deleted with their links at the end."""
    try:
        for name in names:
            _run("ip", "netns", "add", name)
            _run("ip", "-n", name, "link", "set", "lo", "up")
        yield
    finally:
        for name in names:
            subprocess.run(
                ["ip", "netns", "del", name], capture_output=True, timeout=COMMAND_TIMEOUT_S
            )


@contextmanager
def nat_topology() -> Iterator[NatTopology]:
    """Caller, router (1:1 NAT) and gateway namespaces (see the module docstring)."""
    tag = f"{os.getpid() % 10000}{secrets.token_hex(2)}"
    names = [f"nc{tag}", f"nr{tag}", f"ng{tag}"]
    caller_ns, router_ns, gateway_ns = names
    public_ip = f"172.30.{secrets.randbelow(254) + 1}.{secrets.randbelow(254) + 1}"
    http_if = f"ra{tag}s"
    with _namespaces(*names):
        try:
            router_to_caller, caller_ip = _link(f"{tag}c", router_ns, caller_ns)
            router_to_gateway, gateway_ip = _link(f"{tag}g", router_ns, gateway_ns)
            _run(*exec_prefix(router_ns), "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            _run(*exec_prefix(router_ns), "nft", "-f", "-",
                 stdin=nat_ruleset(public_ip, gateway_ip))  # fmt: skip
            _run("ip", "-n", caller_ns, "route", "add", f"{public_ip}/32", "via", router_to_caller)
            _run("ip", "-n", gateway_ns, "route", "add", "default", "via", router_to_gateway)
            _, http_ip = _link(f"{tag}s", None, gateway_ns)
            yield NatTopology(
                caller_ns, router_ns, gateway_ns, caller_ip, gateway_ip, public_ip, http_ip
            )
        finally:
            subprocess.run(
                ["ip", "link", "del", http_if], capture_output=True, timeout=COMMAND_TIMEOUT_S
            )


@contextmanager
def relay_topology() -> Iterator[RelayTopology]:
    """The three namespaces and their links (see the module docstring)."""
    tag = f"{os.getpid() % 10000}{secrets.token_hex(2)}"
    names = [f"tc{tag}", f"tt{tag}", f"tg{tag}"]
    caller_ns, turn_ns, gateway_ns = names
    relay_ip = f"172.31.{secrets.randbelow(254) + 1}.{secrets.randbelow(254) + 1}"
    http_if = f"ra{tag}s"
    with _namespaces(*names):
        try:
            _run("ip", "-n", turn_ns, "addr", "add", f"{relay_ip}/32", "dev", "lo")
            turn_to_caller, caller_ip = _link(f"{tag}c", turn_ns, caller_ns)
            turn_to_gateway, gateway_ip = _link(f"{tag}g", turn_ns, gateway_ns)
            _run("ip", "-n", caller_ns, "route", "add", f"{relay_ip}/32", "via", turn_to_caller)
            _run("ip", "-n", gateway_ns, "route", "add", f"{relay_ip}/32", "via",
                 turn_to_gateway)  # fmt: skip
            _, http_ip = _link(f"{tag}s", None, gateway_ns)
            yield RelayTopology(
                caller_ns, turn_ns, gateway_ns, caller_ip, gateway_ip, relay_ip, http_ip
            )
        finally:
            subprocess.run(
                ["ip", "link", "del", http_if], capture_output=True, timeout=COMMAND_TIMEOUT_S
            )
