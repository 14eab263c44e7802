"""Caller audio across a network namespace with kernel packet loss (needs root).

Pins down:
- the namespace, veth pair and nftables table exist only for the test's duration
  and are removed even when the test body fails;
- the nftables input rule really drops RTP in the kernel, and ICE/DTLS still pass;
- with 5 % kernel loss plus 40 +/- 20 ms relay jitter inside the namespace, our
  receive path delivers frames within 1 percentage point of the packets received,
  with no media gap longer than the longest burst plus 40 ms.
"""

from __future__ import annotations

import subprocess

from tests.support.netem.loss_call import FRAME_MS
from tests.support.netem.netns import namespace_exists, veth_namespace
from tests.support.netem.ns_call import run_netns_loss_call
from tests.support.netem.relay import Impairment


class Boom(Exception):
    pass


def test_the_namespace_is_removed_even_when_the_body_fails() -> None:
    seen = []
    try:
        with veth_namespace(loss_per_mille=50) as link:
            seen.append(link)
            assert namespace_exists(link.namespace)
            rules = subprocess.run(
                [*link.exec_prefix(), "nft", "list", "ruleset"],
                capture_output=True, text=True, check=True, timeout=10,
            ).stdout  # fmt: skip
            assert "numgen random mod 1000 < 50" in rules
            raise Boom
    except Boom:
        pass
    assert len(seen) == 1
    assert not namespace_exists(seen[0].namespace)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=10)
    assert seen[0].host_if not in links.stdout


async def test_kernel_loss_in_a_namespace_costs_only_the_lost_packets() -> None:
    jitter = Impairment(delay_s=0.04, jitter_s=0.02, seed=21)
    with veth_namespace(loss_per_mille=50) as link:
        run = await run_netns_loss_call(link, jitter, ours=True)
    assert run.packets_sent == 150
    assert run.packets_received < run.packets_sent, "the kernel should have dropped some"
    assert run.shortfall_pp <= 1.0, run
    assert run.max_media_step_ms <= run.max_burst_packets * FRAME_MS + 40.0, run
