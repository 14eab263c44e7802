"""WHIP clients with trickle ICE on independent ECDSA stacks call the gateway.

Pins down, with `node/whip_caller.mjs` (npm packages locked in `node/package-lock.json`):
- werift (pure TypeScript) and node-datachannel (libdatachannel, the stack of OBS's
  WHIP output) each: POST an offer with no candidates, trickle theirs by PATCH
  (`application/trickle-ice-sdpfrag`, 204), get an `a=setup:passive` answer (they
  are DTLS client), connect, and exchange audio both ways (the fake agent hears the
  caller's tone; the caller decodes the agent's tone) and the data channel's
  `session` message;
- libdatachannel, ten calls in a row, fails none: each connects, gets `session` and
  hears the agent, and the agent hears each caller (with an `active` answer our
  ClientHello could reach it before it had applied the answer, "unknown CA": 3 calls
  in 40 were seen failing so on a busy machine);
- a caller with its candidates in the offer (no trickle, as OBS sends them) that
  applies the answer 500 ms late, as a loaded client might, still connects and talks:
  our ICE checks reach it first, and it answers and holds them (werift; libdatachannel
  has a race here of its own, see that test).

With `a=setup:active` answers these ECDSA stacks connected too on this machine (0
failures in 40 libdatachannel calls either way, load ~1.4): these tests fail on the
old code only by the role they assert. They guard interop, e.g. against a cipher list
or role change that breaks ECDSA callers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.audio.pcm import rms
from tests.interop import peers
from tests.support.fakes import FakeAgentConnector
from tests.support.peers import tone_pcm

#: The agent's tone (amplitude 8000) decodes at RMS ~5,600; Opus silence at ~0.
HEARD_RMS = 1000.0
#: The caller's tone reaches the agent at RMS ~4,200 (16 kHz); silence is 0.
AGENT_HEARD_RMS = 1000.0


@pytest.fixture
def opus_file(tmp_path: Path) -> Path:
    """One second of the caller's 300 Hz tone as 20 ms Opus packets (the clients loop it)."""
    path = tmp_path / "caller-opus.json"
    packets = peers.opus_packets(tone_pcm(1.0, 300.0))
    path.write_text(json.dumps({"payloads": [base64.b64encode(p).decode() for p in packets]}))
    return path


async def _calls(
    start_gateway: Callable[..., Any], stack: str, opus_file: Path, *options: str
) -> tuple[list[dict[str, Any]], FakeAgentConnector, peers.PeerProcess]:
    connector = FakeAgentConnector()
    client = await start_gateway(connector)
    async with peers.agent_speaks_to_every_caller(connector, tone_s=3.0):
        caller = await peers.start(
            "node",
            str(peers.NODE_CALLER),
            "--stack",
            stack,
            "--url",
            str(client.make_url("/calls")),
            "--packets",
            str(opus_file),
            *options,
        )
        async with caller:
            report = await caller.report()
    calls: list[dict[str, Any]] = report["calls"]
    return calls, connector, caller


def _assert_talked(call: dict[str, Any], heard_at_least: int, diagnosis: str) -> None:
    assert call["http_status"] == 201, diagnosis
    assert "connected" in call["states"], diagnosis
    messages = [json.loads(m) for m in call["messages"]]
    assert messages, diagnosis
    assert messages[0]["type"] == "session", diagnosis
    levels = peers.decoded_rms([base64.b64decode(p) for p in call["received"]])
    assert sum(level > HEARD_RMS for level in levels) >= heard_at_least, diagnosis
    assert call["delete_status"] == 204, diagnosis
    assert call["answer_setup"] == "passive", diagnosis  # the caller is DTLS client


@pytest.mark.parametrize("stack", ["werift", "datachannel"])
async def test_a_trickle_ice_whip_client_talks_both_ways(
    node_clients: None, start_gateway: Callable[..., Any], opus_file: Path, stack: str
) -> None:
    calls, connector, caller = await _calls(start_gateway, stack, opus_file, "--seconds", "3")
    [call] = calls
    diagnosis = caller.diagnosis(call)
    assert call["patch_statuses"], diagnosis  # candidates were trickled
    assert set(call["patch_statuses"]) == {204}, diagnosis
    _assert_talked(call, heard_at_least=75, diagnosis=diagnosis)  # >= 1.5 s of 3 s
    assert rms(bytes(connector.last.audio)) > AGENT_HEARD_RMS


async def test_libdatachannel_connects_ten_calls_in_a_row(
    node_clients: None, start_gateway: Callable[..., Any], opus_file: Path
) -> None:
    calls, connector, caller = await _calls(
        start_gateway, "datachannel", opus_file, "--seconds", "0.6", "--calls", "10"
    )
    assert len(calls) == 10
    failed = [c for c in calls if "connected" not in c["states"] or not c["messages"]]
    assert not failed, caller.diagnosis(failed[0])
    for call in calls:
        _assert_talked(call, heard_at_least=10, diagnosis=caller.diagnosis(call))
    assert len(connector.sessions) == 10
    assert all(rms(bytes(s.audio)) > AGENT_HEARD_RMS for s in connector.sessions)


async def test_a_caller_that_applies_the_answer_late_still_connects(
    node_clients: None, start_gateway: Callable[..., Any], opus_file: Path
) -> None:
    """Our checks reach a caller before it has our answer; it still connects.

    With the caller's candidates in its offer, aioice starts checking them as soon as
    we answer, so they reach the caller before it has applied the answer (`early_checks`
    > 0). RFC 8445 lets that happen: the caller answers them with its own password
    and learns us as a peer-reflexive candidate (s7.3.1.3). Our answer says
    `a=setup:passive`, so nothing but STUN reaches it first; that role is asserted.

    Played by werift, not libdatachannel: libdatachannel 0.24.5 (node-datachannel
    0.33.4, the newest on npm) has a race in exactly this situation, whatever the
    answer's delay. `rtc::PeerConnection::setRemoteDescription` gives the answer to
    its ICE transport before `impl::PeerConnection::processRemoteDescription` commits
    it. libjuice then checks the peer-reflexive pair our early check left; on
    loopback our reply can arrive before the commit, and the ICE-connected callback
    starts DTLS (`initDtlsTransport`) with no remote description yet, so with the
    default SHA-256 fingerprint algorithm while libdatachannel keeps only our
    answer's last fingerprint (sha-512). `checkFingerprint` then returns false
    without a log line and the call fails with "DTLS alert: unknown CA"; when that
    close beats the end of `setRemoteDescription`, it throws "Got a remote candidate
    without ICE transport". Upstream: libdatachannel PR #1612 "Fix DTLS startup
    ordering"; libdatachannel's master starts DTLS on ICE-connected only with a
    committed remote description, and from `processRemoteDescription` when ICE
    connected first. Measured with both cores busy: libdatachannel failed 3 of 20
    calls (500 ms delay); with node pinned to one busy core, 2 of 12 (500 ms), 3 of
    20 with no delay (OBS's own timing), 1 of 20 with only the sha-256 fingerprint
    left in the answer (the whole DTLS flight beat the commit); werift 0 of 20, and
    0 of 20 pinned. The gateway cannot prevent it short of not checking (ICE-lite,
    which aioice lacks).
    """
    calls, _, caller = await _calls(
        start_gateway,
        "werift",
        opus_file,
        "--seconds",
        "1",
        "--candidates-in-offer",
        "--answer-delay-ms",
        "500",
    )
    [call] = calls
    assert call["patch_statuses"] == [], caller.diagnosis(call)  # nothing to trickle
    assert call["early_checks"] > 0, caller.diagnosis(call)  # our checks came first
    _assert_talked(call, heard_at_least=20, diagnosis=caller.diagnosis(call))
