"""Route a WebRTC call through the relay by rewriting each side's host candidate.

With ICE restricted to loopback, aiortc advertises exactly one host candidate,
127.0.0.1:<port>, in every m-section (bundled). `route_via` replaces that address
and port (in `a=candidate` lines and the m-line default port) with the relay's and
returns the real address, which the relay needs to forward to.
"""

from __future__ import annotations

from tests.support.netem.relay import Addr


def host_candidate(sdp: str) -> Addr:
    """The single host candidate address of an SDP; raises if there is not exactly one."""
    found = set()
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            if fields[2].lower() == "udp" and "host" in fields[7:9]:
                found.add((fields[4], int(fields[5])))
    if len(found) != 1:
        raise ValueError(f"expected one UDP host candidate, found {sorted(found)}")
    return found.pop()


def route_via(sdp: str, relay_addr: Addr) -> tuple[str, Addr]:
    """The SDP with its host candidate replaced by `relay_addr`, and the real address."""
    real_host, real_port = host_candidate(sdp)
    host, port = relay_addr
    lines = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            if fields[4] == real_host and fields[5] == str(real_port):
                fields[4], fields[5] = host, str(port)
            line = " ".join(fields)
        elif line.startswith("m=") and line.split()[1] == str(real_port):
            fields = line.split()
            fields[1] = str(port)
            line = " ".join(fields)
        lines.append(line)
    return "\r\n".join(lines) + "\r\n", (real_host, real_port)
