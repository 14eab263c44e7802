"""A measured call across a network namespace: kernel loss plus relay jitter.

The caller runs here, in the test's namespace, with ICE on the host end of a veth
pair (`netns.py`). The receiving peer runs in a child process inside the namespace
(`python -m tests.support.netem.ns_call`), behind the seeded relay (`relay.py`, jitter only)
bound to the namespace's veth address. RTP crossing the veth into the namespace is
dropped at random by the namespace's nftables input rule, so loss happens in the
kernel, before the relay sees the packet. The two processes exchange SDP and
results as JSON lines over the child's stdin/stdout; the child is killed if it
outlives `CHILD_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from gateway.loadtest.source_track import add_source_track
from gateway.rtc import ice
from gateway.rtc.receive_path import LossTolerantAudioTrack
from tests.support import REPO_ROOT
from tests.support.netem.loss_call import (
    SETTLE_S,
    FrameLog,
    LossRun,
    ToneTrack,
    receive_through,
    rtp_count,
    summarise,
)
from tests.support.netem.netns import VethLink
from tests.support.netem.relay import Impairment
from tests.support.netem.relay_thread import RelayThread

CHILD_TIMEOUT_S = 30.0


async def send_message(proc: asyncio.subprocess.Process, message: dict[str, Any]) -> None:
    """One JSON line to a helper process in a namespace (its stdin)."""
    assert proc.stdin is not None
    proc.stdin.write((json.dumps(message) + "\n").encode())
    await proc.stdin.drain()


async def receive_message(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    """One JSON line from a helper process in a namespace (its stdout)."""
    assert proc.stdout is not None
    line = await proc.stdout.readline()
    if not line:
        raise RuntimeError("the process in the namespace exited early")
    message: dict[str, Any] = json.loads(line)
    return message


async def run_netns_loss_call(
    link: VethLink, jitter: Impairment, *, ours: bool, frames: int = 150
) -> LossRun:
    """Caller here, receiver in `link.namespace`; `jitter` applies inside (its loss 0)."""
    proc = await asyncio.create_subprocess_exec(
        *link.exec_prefix(), sys.executable, "-m", "tests.support.netem.ns_call",
        cwd=REPO_ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    tone = ToneTrack(frames)
    try:
        with ice.host_addresses_restricted([link.host_ip]):
            caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            add_source_track(caller, tone, "sendonly")
            await caller.setLocalDescription(await caller.createOffer())
        async with asyncio.timeout(CHILD_TIMEOUT_S):
            await send_message(proc, {"offer": caller.localDescription.sdp, "ours": ours,
                               "ns_ip": link.ns_ip, "impairment": asdict(jitter)})  # fmt: skip
            answer = (await receive_message(proc))["answer"]
            await caller.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            await tone.finished.wait()
            sent = rtp_count(await caller.getSenders()[0].getStats(), "outbound-rtp")
            await send_message(proc, {"packets_sent": sent})
            result = (await receive_message(proc))["result"]
        return LossRun(**result)
    finally:
        await asyncio.wait_for(caller.close(), 5)
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 5)


async def _serve() -> None:
    """The child: one receiving peer behind the relay, driven by JSON lines."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    request = json.loads(await reader.readline())
    impairment = Impairment(**{**request["impairment"], "blackouts": ()})
    relay = await RelayThread(uplink=impairment, host=request["ns_ip"]).start()
    callee = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    log = FrameLog()
    try:
        ours = bool(request["ours"])
        receiving = await receive_through(
            relay, callee, request["offer"], ours=ours, log=log, name="ns-call"
        )
        transceiver, track, consumer = receiving.transceiver, receiving.track, receiving.consumer
        print(json.dumps({"answer": receiving.answer}), flush=True)
        sent = json.loads(await reader.readline())["packets_sent"]
        await relay.drained()
        await asyncio.sleep(SETTLE_S)
        await log.quiet()
        received = rtp_count(await transceiver.receiver.getStats(), "inbound-rtp")
        late = track.stats.buffer.late if isinstance(track, LossTolerantAudioTrack) else 0
        path = "ours" if ours else "stock"
        run = summarise(path, relay, received, log, late, packets_sent=sent)
        print(json.dumps({"result": asdict(run)}), flush=True)
    finally:
        await asyncio.wait_for(callee.close(), 5)
        await relay.aclose()
    await asyncio.wait_for(consumer, 5)


def main() -> None:
    # No ICE patch needed in the child: the namespace has only lo (which aioice skips)
    # and the veth end, so host candidates are exactly the veth address.
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
