"""Amplification: the UDP bytes a gateway sends to addresses a hostile caller names,
per byte of HTTP the caller sent.

The attack (what issue 12 measured): offer a call whose ICE ufrag is as long as the
gateway takes, with as many candidates as it takes (in the offer, then trickled with
`PATCH`), all pointing at a victim; never connect. The gateway's ICE agent sends
STUN checks to every candidate, with the ufrag in each, until the call gives up
(`call_setup_timeout_s`, 30 s by default). Here the victims are UDP listeners the
run owns on 127.0.0.x (`udp_listeners.py`), so every byte is counted and nothing
leaves the machine. Request bytes are the HTTP bodies (headers, ~200 bytes a
request, are not counted: that flatters the attacker a little).

Run it (an in-process gateway with a fake agent; seconds = setup timeout + 3):

    python -m tests.fuzz.amplification --candidates 1000 --ufrag 256
    python -m tests.fuzz.amplification --candidates 1000 --ufrag 30000

It only speaks HTTP to `gateway.app.create_app`, so the same command measures an
older checkout (copy `tests/fuzz/` into it). `attack` is what
`tests/test_hostile_load.py` asserts its bounds on.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from tests.fuzz.edge import SDP, SDPFRAG
from tests.fuzz.mutations import corpus_offers
from tests.fuzz.udp_listeners import UdpListeners

#: Candidate lines per trickle PATCH (~60 bytes each: well under a 64 KiB body).
LINES_PER_PATCH = 500


def hostile_offer(candidates: list[str], ufrag_chars: int) -> str:
    """The corpus's aiortc offer with its ufrag `ufrag_chars` long and `candidates`
    as its only candidates (in its first section, the BUNDLE's transport)."""
    offer = corpus_offers()["aiortc.sdp"]
    offer = re.sub(r"^a=candidate:[^\r\n]*\r\n", "", offer, flags=re.MULTILINE)
    offer = re.sub(r"^a=end-of-candidates\r\n", "", offer, flags=re.MULTILINE)
    offer = re.sub(r"^a=ice-ufrag:[^\r\n]*", "a=ice-ufrag:" + "u" * ufrag_chars, offer, flags=re.M)
    lines = offer.split("\r\n")
    at = lines.index("a=mid:0") + 1
    return "\r\n".join([*lines[:at], *candidates, *lines[at:]])


def sdpfrag(candidates: list[str]) -> str:
    return "".join(line + "\r\n" for line in ["a=mid:0", *candidates])


@dataclass
class Attack:
    """What the hostile callers sent and what reached the listeners."""

    calls: int
    statuses: list[int]
    request_bytes: int
    packets: int
    bytes: int
    stun_requests: int
    probed: int

    @property
    def factor(self) -> float:
        return self.bytes / self.request_bytes if self.request_bytes else 0.0

    @property
    def stun_per_call(self) -> float:
        return self.stun_requests / self.calls if self.calls else 0.0


async def attack(
    client: TestClient[Any, Any],
    listeners: UdpListeners,
    *,
    calls: int,
    offer_candidates: int,
    ufrag_chars: int,
    wait_s: float,
) -> Attack:
    """`calls` hostile calls, each naming every listener (the first `offer_candidates`
    in the offer, the rest trickled); then wait `wait_s` for the gateway to give up."""
    lines = list(listeners.candidate_lines())
    statuses, request_bytes = [], 0
    for _ in range(calls):
        offer = hostile_offer(lines[:offer_candidates], ufrag_chars).encode()
        request_bytes += len(offer)
        async with client.post("/calls", data=offer, headers=SDP) as response:
            statuses.append(response.status)
            location = response.headers.get("Location")
            patch_headers = {**SDPFRAG, "If-Match": response.headers.get("ETag", "")}
        for start in range(offer_candidates, len(lines) if location else 0, LINES_PER_PATCH):
            body = sdpfrag(lines[start : start + LINES_PER_PATCH]).encode()
            request_bytes += len(body)
            async with client.patch(str(location), data=body, headers=patch_headers) as response:
                statuses.append(response.status)
    await asyncio.sleep(wait_s)
    return Attack(
        calls=calls,
        statuses=statuses,
        request_bytes=request_bytes,
        packets=listeners.packets,
        bytes=listeners.bytes,
        stun_requests=listeners.stun_requests,
        probed=len(listeners.probed()),
    )


async def _main(args: argparse.Namespace) -> None:
    from gateway.app import create_app
    from gateway.config import load_settings
    from tests.support.fakes import FakeAgentConnector

    settings = load_settings(
        {"ice_addresses": "127.0.0.1", "call_setup_timeout_s": args.setup_timeout},
        environ={},
    )
    client = TestClient(TestServer(create_app(settings, FakeAgentConnector())))
    await client.start_server()
    listeners = await UdpListeners.open(args.candidates)
    try:
        result = await attack(
            client,
            listeners,
            calls=args.calls,
            offer_candidates=min(args.candidates, args.in_offer),
            ufrag_chars=args.ufrag,
            wait_s=args.setup_timeout + 3,
        )
    finally:
        listeners.close()
        await client.close()
    print(
        f"calls {result.calls}, candidates {args.candidates}, ufrag {args.ufrag}: "
        f"statuses {sorted(set(result.statuses))}, requests {result.request_bytes:,} B, "
        f"UDP sent {result.packets:,} packets / {result.bytes:,} B to {result.probed} "
        f"addresses, STUN per call {result.stun_per_call:.0f}, "
        f"amplification {result.factor:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=1000, help="victims per call")
    parser.add_argument("--in-offer", type=int, default=100, help="candidates in the offer")
    parser.add_argument("--ufrag", type=int, default=256, help="ICE ufrag characters")
    parser.add_argument("--setup-timeout", type=float, default=30.0)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
