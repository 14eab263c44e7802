"""A network namespace joined to this one by a veth pair, with kernel packet loss.

The kernel here has no netem, but namespaces, veth pairs and nftables work (root
needed). `veth_namespace()` creates a uniquely named namespace and a /30 link to it,
optionally with an nftables rule in the namespace's *input* hook that drops a random
share of the RTP/RTCP arriving over the link (the output hook would make `sendto`
fail with EPERM instead of losing the packet). The rule matches the first two bits
of the UDP payload (RTP version 2, RFC 7983), so ICE and DTLS are never dropped.

Everything lives in the namespace the test created: deleting the namespace (always,
in `finally`) removes its veth end, which removes the pair, and its nftables table.
Nothing is routed anywhere else. Commands are bounded by `COMMAND_TIMEOUT_S`.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

COMMAND_TIMEOUT_S = 10.0
SUBNET_POOL = ipaddress.IPv4Network("10.231.0.0/16")


@dataclass(frozen=True, slots=True)
class VethLink:
    namespace: str
    host_if: str
    host_ip: str
    ns_if: str
    ns_ip: str

    def exec_prefix(self) -> list[str]:
        """Prefix a command with this to run it inside the namespace."""
        return ["ip", "netns", "exec", self.namespace]


def _run(*args: str, stdin: str | None = None) -> None:
    subprocess.run(
        args, check=True, input=stdin, text=True, capture_output=True, timeout=COMMAND_TIMEOUT_S
    )


def _free_subnet() -> ipaddress.IPv4Network:
    used = subprocess.run(
        ["ip", "-4", "-o", "addr"],
        check=True,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    ).stdout
    for _ in range(64):
        subnet = ipaddress.IPv4Network(
            f"10.231.{secrets.randbelow(256)}.{4 * secrets.randbelow(64)}/30"
        )
        assert subnet.subnet_of(SUBNET_POOL)
        if not any(str(host) in used for host in subnet):
            return subnet
    raise RuntimeError("no free /30 in 10.231.0.0/16")


def loss_ruleset(ns_if: str, loss_per_mille: int) -> str:
    return f"""table inet netem_loss {{
    chain input {{
        type filter hook input priority 0; policy accept;
        iifname "{ns_if}" udp length > 20 @th,64,2 2 numgen random mod 1000 < {loss_per_mille} drop
    }}
}}
"""


@contextmanager
def veth_namespace(loss_per_mille: int = 0) -> Iterator[VethLink]:
    """A fresh namespace linked to this one; RTP into it loses `loss_per_mille`/1000."""
    if not 0 <= loss_per_mille <= 1000:
        raise ValueError("loss_per_mille must be in 0..1000")
    tag = f"{os.getpid() % 100000}{secrets.token_hex(2)}"
    subnet = _free_subnet()
    host_ip, ns_ip = (str(h) for h in subnet.hosts())
    link = VethLink(f"netem{tag}", f"nh{tag}", host_ip, f"nn{tag}", ns_ip)
    _run("ip", "netns", "add", link.namespace)
    try:
        _run("ip", "link", "add", link.host_if, "type", "veth", "peer", "name", link.ns_if)
        _run("ip", "link", "set", link.ns_if, "netns", link.namespace)
        _run("ip", "addr", "add", f"{host_ip}/30", "dev", link.host_if)
        _run("ip", "link", "set", link.host_if, "up")
        _run("ip", "-n", link.namespace, "addr", "add", f"{ns_ip}/30", "dev", link.ns_if)
        _run("ip", "-n", link.namespace, "link", "set", link.ns_if, "up")
        _run("ip", "-n", link.namespace, "link", "set", "lo", "up")
        if loss_per_mille:
            _run(
                *link.exec_prefix(),
                "nft",
                "-f",
                "-",
                stdin=loss_ruleset(link.ns_if, loss_per_mille),
            )
        yield link
    finally:
        subprocess.run(
            ["ip", "netns", "del", link.namespace], capture_output=True, timeout=COMMAND_TIMEOUT_S
        )
        subprocess.run(
            ["ip", "link", "del", link.host_if], capture_output=True, timeout=COMMAND_TIMEOUT_S
        )


def namespace_exists(name: str) -> bool:
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
    ).stdout
    return any(line.split()[0] == name for line in out.splitlines() if line.strip())
