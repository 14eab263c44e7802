"""Independent peers as subprocesses: GStreamer (system Python) and Node WHIP clients.

Each peer is a script that calls the gateway by itself and prints one JSON report
on stdout; `start` runs it, `PeerProcess.report` waits for and parses that report,
and leaving the `async with` kills a peer still running. A peer whose toolchain is
missing fails the test with a message naming `scripts/bootstrap --test`: interop
tests never skip. Also: Opus packets for peers without an encoder (`opus_packets`),
the level of what a peer heard (`decoded_rms`), and a fake agent that speaks to
every caller (`agent_speaks_to_every_caller`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import av

from gateway.agent_api import AgentAudio
from gateway.audio.formats import WEBRTC_FRAME_SAMPLES, WEBRTC_RATE_HZ
from gateway.audio.pcm import rms
from tests.support.fakes import FakeAgentConnector, agent_tone

HERE = Path(__file__).resolve().parent
GST_PYTHON = "/usr/bin/python3"
GST_CALLER = HERE / "gst_whip_caller.py"
NODE_DIR = HERE / "node"
NODE_CALLER = NODE_DIR / "whip_caller.mjs"
REPORT_TIMEOUT_S = 30.0
BOOTSTRAP_HINT = "run scripts/bootstrap --test"

#: GStreamer's DTLS and webrtcbin errors (e.g. "no shared cipher") on stderr.
GST_ENV = {"GST_DEBUG": "dtls*:1,webrtc*:1,nice*:1", "GST_DEBUG_NO_COLOR": "1"}

_GST_PROBE = """
import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import Gst, GstSdp, GstWebRTC
Gst.init(None)
missing = [e for e in ("webrtcbin", "nicesrc", "dtlssrtpenc", "sctpenc", "opusenc", "opusdec",
           "rtpopuspay", "rtpopusdepay", "audiotestsrc", "level") if not Gst.ElementFactory.find(e)]
print(" ".join(missing))
"""


def require_gstreamer() -> None:
    """Fail (never skip) unless the system Python has PyGObject and the GStreamer
    elements the caller uses."""
    if not Path(GST_PYTHON).exists():
        raise AssertionError(f"{GST_PYTHON} is missing: {BOOTSTRAP_HINT}")
    probe = subprocess.run(
        [GST_PYTHON, "-c", _GST_PROBE], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0 or probe.stdout.strip():
        raise AssertionError(
            "GStreamer webrtcbin under the system Python is not usable "
            f"({probe.stdout.strip() or probe.stderr.strip()[-300:]}): {BOOTSTRAP_HINT}"
        )


def require_node_clients() -> None:
    """Fail (never skip) unless node and the locked npm packages are installed."""
    if shutil.which("node") is None:
        raise AssertionError(f"node is missing: {BOOTSTRAP_HINT}")
    for package in ("werift", "node-datachannel"):
        if not (NODE_DIR / "node_modules" / package / "package.json").exists():
            raise AssertionError(
                f"npm package {package} is missing in {NODE_DIR}: {BOOTSTRAP_HINT}"
            )


class PeerProcess:
    """A running peer script; `report()` is its JSON report."""

    def __init__(self, process: asyncio.subprocess.Process, argv: tuple[str, ...]) -> None:
        self.process = process
        self.argv = argv
        self.stderr = ""

    async def report(self, timeout_s: float = REPORT_TIMEOUT_S) -> dict[str, Any]:
        stdout, stderr = await asyncio.wait_for(self.process.communicate(), timeout_s)
        self.stderr = stderr.decode(errors="replace")
        lines = stdout.decode(errors="replace").strip().splitlines()
        assert lines, (
            f"{self.argv[1]} reported nothing (exit {self.process.returncode}):\n"
            + (self.stderr[-3000:])
        )
        report: dict[str, Any] = json.loads(lines[-1])
        return report

    def diagnosis(self, report: dict[str, Any]) -> str:
        """The report without bulky fields, and the end of the peer's stderr."""
        brief = {k: v for k, v in report.items() if k not in ("certificate_pem", "received")}
        if "received" in report:
            brief["received_packets"] = len(report["received"])
        return f"{json.dumps(brief)[:3000]}\n--- peer stderr ---\n{self.stderr[-3000:]}"

    async def __aenter__(self) -> PeerProcess:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


async def start(*argv: str, env: dict[str, str] | None = None) -> PeerProcess:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    return PeerProcess(process, argv)


def opus_packets(pcm_48k_mono: bytes) -> list[bytes]:
    """Encode mono s16 PCM at 48 kHz into 20 ms Opus packets (what the Node clients
    send: they have no encoder of their own)."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = WEBRTC_RATE_HZ
    encoder.layout = "mono"
    encoder.format = "s16"
    samples = WEBRTC_FRAME_SAMPLES
    packets: list[bytes] = []
    for start in range(0, len(pcm_48k_mono) // 2 - samples + 1, samples):
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.sample_rate = WEBRTC_RATE_HZ
        frame.planes[0].update(pcm_48k_mono[start * 2 : (start + samples) * 2])
        packets.extend(bytes(p) for p in encoder.encode(frame))
    return packets


def decoded_rms(payloads: list[bytes]) -> list[float]:
    """Decode Opus payloads (48 kHz) and return the RMS of each decoded frame."""
    decoder = av.CodecContext.create("opus", "r")
    decoder.sample_rate = WEBRTC_RATE_HZ
    decoder.layout = "stereo"
    to_s16 = av.AudioResampler(format="s16", layout="mono", rate=WEBRTC_RATE_HZ)
    levels: list[float] = []
    for payload in payloads:
        for frame in decoder.decode(av.Packet(payload)):
            for mono in to_s16.resample(frame):
                levels.append(rms(bytes(mono.planes[0])[: mono.samples * 2]))
    return levels


@contextlib.asynccontextmanager
async def agent_speaks_to_every_caller(
    connector: FakeAgentConnector, tone_s: float
) -> AsyncIterator[None]:
    """While open: as soon as each call's agent session opens, the fake agent says a
    tone of `tone_s` (it is paced out once the call connects)."""

    async def speak() -> None:
        spoken = 0
        while True:
            await connector.session_opened.wait()
            connector.session_opened.clear()
            for session in connector.sessions[spoken:]:
                session.emit(AgentAudio(agent_tone(tone_s)))
            spoken = len(connector.sessions)

    task = asyncio.create_task(speak(), name="interop/agent-speaks")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
