"""Caller audio under packet loss and jitter, through a real impaired link.

Pins down, for two real aiortc peers talking through the seeded loopback relay with
40 +/- 20 ms jitter on the caller's link (3 s of audio per case):
- with 5 % and 20 % random loss, the frames our receive path delivers are within
  1 percentage point of the packets the receiver got (stock aiortc loses 4-5 frames
  per lost packet: `bench/loss.py` measures both side by side);
- no gap on the media timeline is longer than the longest loss burst plus 40 ms,
  including a 200 ms blackout.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.netem.loss_call import FRAME_MS, LossRun, run_loss_call
from tests.support.netem.relay import Impairment

JITTER: dict[str, Any] = {"delay_s": 0.04, "jitter_s": 0.02}


def assert_loss_tolerant(run: LossRun) -> None:
    assert run.packets_received < run.packets_sent, "the link should have lost packets"
    assert run.shortfall_pp <= 1.0, run
    assert run.max_media_step_ms <= run.max_burst_packets * FRAME_MS + 40.0, run


@pytest.mark.parametrize(("loss", "seed"), [(0.05, 11), (0.20, 12)])
async def test_random_loss_costs_only_the_lost_packets(loss: float, seed: int) -> None:
    run = await run_loss_call(Impairment(loss=loss, seed=seed, **JITTER), ours=True)
    assert_loss_tolerant(run)
    assert run.packets_sent == 150


async def test_a_blackout_leaves_a_gap_no_longer_than_the_blackout_plus_40_ms() -> None:
    link = Impairment(blackouts=((1.0, 0.2),), seed=13, **JITTER)
    run = await run_loss_call(link, ours=True)
    assert run.max_burst_packets >= 6  # ~10 packets of 20 ms; the sender paces loosely
    assert_loss_tolerant(run)
