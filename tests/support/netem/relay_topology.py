"""Three network namespaces where a caller reaches the gateway only through TURN.

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
must go through the relay. The gateway's HTTP is reached from this namespace over a
fourth link, as signaling reaches a gateway behind a load balancer. The relay address
is on 172.16/12, the links on 10.231/16: the gateway's ICE policy admits 10/8 (its
own range) but must admit the relay address for being its TURN server's.

Everything is removed in `finally` (deleting a namespace removes its veth ends and
their peers). Commands are bounded by `netns.COMMAND_TIMEOUT_S`; root is needed.
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

    def exec_prefix(self, namespace: str) -> list[str]:
        return ["ip", "netns", "exec", namespace]

    def can_send(self, namespace: str, address: str) -> bool:
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
            [*self.exec_prefix(namespace), sys.executable, "-c", probe],
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


@contextmanager
def relay_topology() -> Iterator[RelayTopology]:
    """The three namespaces and their links (see the module docstring)."""
    tag = f"{os.getpid() % 10000}{secrets.token_hex(2)}"
    names = [f"tc{tag}", f"tt{tag}", f"tg{tag}"]
    caller_ns, turn_ns, gateway_ns = names
    relay_ip = f"172.31.{secrets.randbelow(254) + 1}.{secrets.randbelow(254) + 1}"
    http_if = f"ra{tag}s"
    try:
        for name in names:
            _run("ip", "netns", "add", name)
            _run("ip", "-n", name, "link", "set", "lo", "up")
        _run("ip", "-n", turn_ns, "addr", "add", f"{relay_ip}/32", "dev", "lo")
        turn_to_caller, caller_ip = _link(f"{tag}c", turn_ns, caller_ns)
        turn_to_gateway, gateway_ip = _link(f"{tag}g", turn_ns, gateway_ns)
        _run("ip", "-n", caller_ns, "route", "add", f"{relay_ip}/32", "via", turn_to_caller)
        _run("ip", "-n", gateway_ns, "route", "add", f"{relay_ip}/32", "via", turn_to_gateway)
        _, http_ip = _link(f"{tag}s", None, gateway_ns)
        yield RelayTopology(
            caller_ns, turn_ns, gateway_ns, caller_ip, gateway_ip, relay_ip, http_ip
        )
    finally:
        for name in names:
            subprocess.run(
                ["ip", "netns", "del", name], capture_output=True, timeout=COMMAND_TIMEOUT_S
            )
        subprocess.run(
            ["ip", "link", "del", http_if], capture_output=True, timeout=COMMAND_TIMEOUT_S
        )
