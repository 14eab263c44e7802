"""Which addresses ICE gathers on, and the public address a 1:1 NAT announces.

Pins down: IPs pass as given; interface names become the interface's IPv4 and
non-link-local IPv6 addresses; an unknown name is refused naming the interfaces
there are; with nothing configured, aioice's default (every interface but loopback),
unless the gateway serves on loopback only, when loopback is added; a public IP
replaces the address of host candidates of its family only, port and everything
else kept.
"""

from __future__ import annotations

import ifaddr
import pytest

from gateway.rtc import ice

ADAPTERS = [
    ifaddr.Adapter("lo", "lo", [
        ifaddr.IP("127.0.0.1", 8, "lo"), ifaddr.IP(("::1", 0, 0), 128, "lo"),
    ]),
    ifaddr.Adapter("eth0", "eth0", [
        ifaddr.IP("10.0.0.5", 24, "eth0"),
        ifaddr.IP(("2001:db8::5", 0, 0), 64, "eth0"),
        ifaddr.IP(("fe80::1", 0, 2), 64, "eth0"),
    ]),
]  # fmt: skip


def test_interface_names_become_their_addresses() -> None:
    chosen = ice.host_addresses(
        ["eth0", "192.0.2.9"], serving_loopback_only=False, adapters=ADAPTERS
    )
    assert chosen == ("10.0.0.5", "2001:db8::5", "192.0.2.9")


def test_an_unknown_interface_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ice.UnknownInterfaceError, match=r"'wlan0'.*interfaces: eth0, lo"):
        ice.host_addresses(["wlan0"], serving_loopback_only=False, adapters=ADAPTERS)


def test_defaults_add_loopback_only_for_a_loopback_gateway() -> None:
    assert ice.host_addresses([], serving_loopback_only=False, adapters=ADAPTERS) == ()
    everything = ice.host_addresses([], serving_loopback_only=True, adapters=ADAPTERS)
    assert everything == ("127.0.0.1", "::1", "10.0.0.5", "2001:db8::5")


ANSWER = "\r\n".join([
    "v=0",
    "a=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host",
    "a=candidate:2 1 udp 2130706175 2001:db8::5 40001 typ host",
    "a=candidate:3 1 udp 1694498815 198.51.100.7 40002 typ srflx raddr 10.0.0.5 rport 40000",
    "a=end-of-candidates",
])  # fmt: skip


def test_a_public_ip_is_announced_on_host_candidates_of_its_family() -> None:
    lines = ice.announce_public_address(ANSWER, "203.0.113.4").split("\r\n")
    assert lines[1] == "a=candidate:1 1 udp 2130706431 203.0.113.4 40000 typ host"
    assert lines[2] == "a=candidate:2 1 udp 2130706175 2001:db8::5 40001 typ host"
    assert lines[3].startswith("a=candidate:3 1 udp 1694498815 198.51.100.7 40002 typ srflx")
    assert lines[4] == "a=end-of-candidates"
