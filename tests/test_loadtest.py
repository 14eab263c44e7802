"""The load tester against a real gateway serving the scripted agent through ADK.

Pins down:
- callers connect, speak the shipped prompt, hear the agent's answers: reply latency
  is positive and a few hundred ms (the scripted agent waits 300 ms of quiet);
  counts are consistent (intervals = packets - 1 per call, gap % = gaps/intervals);
- the server's CPU and memory come from its `GET /stats`;
- a barge-in run measures barge-in to silence and the `interrupted` delay;
- calls past the gateway's `max_calls` are counted as refused (503 + Retry-After);
- `python -m gateway.loadtest` with worker processes prints progress and a table,
  writes the JSON report and exits 0; a failed call makes it exit 1;
- bad options are refused with a clear message (exit 2), before anything runs;
- the packet monitor: gaps, agent audio onsets and silences from packet arrival;
- gaps that the tester's own event-loop stalls explain are told from the server's.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc.rtp import RtpPacket
from google.adk.sessions import InMemorySessionService

from gateway.agent_bridge import AdkAgentConnector
from gateway.agents.scripted import root_agent
from gateway.loadtest import LoadTestConfig, LoadTestConfigError, format_table, run_load_test
from gateway.loadtest.listener import GAP_S, AgentAudioMonitor
from gateway.loadtest.prompt import encode_pcm, encode_prompt
from gateway.loadtest.stalls import LoopStalls
from tests.support import REPO_ROOT


@pytest.fixture
async def scripted_connector() -> AsyncIterator[AdkAgentConnector]:
    connector = AdkAgentConnector(root_agent, InMemorySessionService(), app_name="loadtest")
    yield connector
    await connector.close()


async def gateway_url(start_gateway: Callable[..., Any], connector: Any, **settings: Any) -> str:
    client = await start_gateway(connector, **settings)
    return str(client.make_url("")).rstrip("/")


def assert_consistent(report: dict[str, Any]) -> None:
    audio = report["audio"]
    completed = [c for c in report["calls_detail"] if c["outcome"] == "completed"]
    for call in completed:
        assert call["packets"] > 0
        assert call["frame_intervals"] == call["packets"] - 1
        assert call["gaps"] <= call["frame_intervals"]
        assert (call["gaps"] == 0) == (call["max_gap_s"] == 0.0)
    assert audio["frame_intervals"] == sum(c["frame_intervals"] for c in report["calls_detail"])
    expected = 100.0 * audio["gaps"] / audio["frame_intervals"]
    assert audio["gap_percent"] == pytest.approx(expected)
    assert audio["replies"] + audio["unanswered"] == audio["prompts"]


async def test_callers_hear_the_agent_answer(
    scripted_connector: AdkAgentConnector, start_gateway: Callable[..., Any]
) -> None:
    url = await gateway_url(start_gateway, scripted_connector)
    config = LoadTestConfig(url=url, calls=2, rate=10, duration_s=4.5, pause_s=0.3)
    lines: list[str] = []
    report = await run_load_test(config, lines.append)

    assert report["calls"] == {**report["calls"], "completed": 2, "refused": 0, "failed": 0}
    assert_consistent(report)
    assert report["audio"]["replies"] >= 2  # one answer per call at least
    latency = report["metrics"]["reply_latency_s"]
    assert 0.2 < latency["median"] < 3.0  # 300 ms of quiet, then the answer
    connect = report["metrics"]["connect_s"]
    assert connect["n"] == 2
    assert 0 < connect["max"] < 5.0
    transcript = report["metrics"]["transcript_delay_s"]
    assert transcript["n"] >= 2
    assert abs(transcript["median"]) < 1.0
    server = report["server"]
    assert server["readings"] >= 3
    assert server["peak_calls"] == 2
    assert server["rss_peak_bytes"] > 0
    assert server["cpu_percent"] > 0
    assert report["tester"]["processes"] == 1
    assert lines
    assert "live" in lines[0]
    table = format_table(report)
    assert "2 completed" in table
    assert "reply latency" in table


async def test_barge_in_is_measured(
    scripted_connector: AdkAgentConnector, start_gateway: Callable[..., Any]
) -> None:
    url = await gateway_url(start_gateway, scripted_connector)
    config = LoadTestConfig(url=url, calls=1, duration_s=4.5, barge_in_after_s=0.4)
    report = await run_load_test(config)

    assert report["calls"]["completed"] == 1
    assert_consistent(report)
    silence = report["metrics"]["barge_in_to_silence_s"]
    assert silence["n"] >= 1
    assert 0 < silence["median"] < 1.0  # the agent stops within a second of barge-in
    assert report["metrics"]["interrupted_delay_s"]["n"] >= 1
    assert report["audio"]["barge_in_not_silenced"] == 0


async def test_calls_past_max_calls_are_refused(
    scripted_connector: AdkAgentConnector, start_gateway: Callable[..., Any]
) -> None:
    url = await gateway_url(start_gateway, scripted_connector, max_calls=1)
    config = LoadTestConfig(url=url, calls=3, rate=20, duration_s=1.5)
    report = await run_load_test(config)

    calls = report["calls"]
    assert (calls["completed"], calls["refused"], calls["failed"]) == (1, 2, 0)
    assert calls["retry_after_s"]
    assert calls["retry_after_s"][0] > 0
    refused = [c for c in report["calls_detail"] if c["outcome"] == "refused"]
    assert all(c["http_status"] == 503 for c in refused)


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.loadtest", *args,
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(45):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_command_line_with_worker_processes(
    scripted_connector: AdkAgentConnector, start_gateway: Callable[..., Any], tmp_path: Path
) -> None:
    url = await gateway_url(start_gateway, scripted_connector)
    report_path = tmp_path / "report.json"
    code, out, err = await run_cli(
        url, "--calls", "2", "--processes", "2", "--rate", "10", "--duration", "3",
        "--report", str(report_path),
    )  # fmt: skip
    assert code == 0, err
    assert "2 completed" in out
    assert "| reply latency" in out
    assert "live" in err  # progress lines on stderr
    report = json.loads(report_path.read_text())
    assert report["calls"]["completed"] == 2
    assert report["tester"]["processes"] == 2
    assert report["audio"]["replies"] >= 2
    assert_consistent(report)


async def test_failed_calls_give_exit_status_1(unused_tcp_port: int) -> None:
    code, out, err = await run_cli(
        f"http://127.0.0.1:{unused_tcp_port}", "--calls", "1", "--duration", "1", "--quiet"
    )
    assert code == 1, err
    assert "1 failed" in out
    assert "server /stats unavailable" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://host"], r"url must be http\(s\)"),
        (["http://127.0.0.1:1", "--calls", "0"], "calls must be an integer >= 1"),
        (["http://127.0.0.1:1", "--calls", "2", "--processes", "3"], "must not exceed calls"),
        (["http://127.0.0.1:1", "--rate", "0"], "rate must be > 0"),
        (["http://127.0.0.1:1", "--barge-in-after", "-1"], "barge-in-after must be > 0"),
        (["http://127.0.0.1:1", "--prompt", "/nonexistent.wav"], "prompt file not found"),
        (
            ["http://127.0.0.1:1", "--ice-addresses", "wlan-none"],
            "neither an IP address nor an interface",
        ),
    ],
)
def test_bad_options_are_refused_clearly(args: list[str], message: str) -> None:
    from gateway.loadtest.cli import build_parser, config_from_args

    with pytest.raises(LoadTestConfigError, match=message):
        config_from_args(build_parser().parse_args(args))


async def test_bad_options_exit_2_with_a_message() -> None:
    code, _, err = await run_cli("http://127.0.0.1:1", "--duration", "-3")
    assert code == 2
    assert "duration must be > 0" in err


def test_prompt_is_encoded_once_into_20_ms_payloads() -> None:
    prompt = encode_prompt()
    assert 1.0 < prompt.duration_s < 3.0  # "what is the weather like today"
    assert all(len(p) > 5 for p in prompt.payloads)
    assert len(prompt.silence) < min(len(p) for p in prompt.payloads[5:-5])


def packet(seq: int, payload: bytes) -> RtpPacket:
    return RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, payload=payload)


def tone_payloads(count: int) -> list[bytes]:
    t = np.arange(count * 960) / 48_000
    return encode_pcm((6000 * np.sin(2 * np.pi * 440 * t)).astype("<i2"))[:count]


async def test_monitor_finds_gaps_onsets_and_silences() -> None:
    now = [0.0]
    monitor = AgentAudioMonitor(energy_threshold=200, clock=lambda: now[0])
    tone = tone_payloads(10)
    arrivals: list[tuple[float, bytes]] = []
    arrivals += [(i * 0.02, b"\xf8\xff\xfe") for i in range(5)]  # silence (3 bytes)
    arrivals += [(0.1 + i * 0.02, p) for i, p in enumerate(tone)]  # audio from 0.1 s
    arrivals += [(0.36 + i * 0.02, b"\xf8\xff\xfe") for i in range(5)]  # 60 ms gap before
    for seq, (at, payload) in enumerate(arrivals):
        now[0] = at
        monitor.on_packet(packet(seq, payload))
    assert monitor.packets == 20
    assert monitor.intervals == 19
    assert monitor.gaps == 1
    assert monitor.max_gap_s == pytest.approx(0.08)
    assert monitor.onsets[0] == pytest.approx(0.1, abs=0.021)  # Opus look-ahead: <= 1 frame
    assert monitor.silences == [pytest.approx(0.36)]
    assert monitor.decoded == 10  # silent payloads were never decoded
    assert await monitor.wait_silence(0.2, 0.1) == pytest.approx(0.36)
    assert await monitor.wait_onset(0.2, 0.01) is None


def test_monitor_counts_missing_sequence_numbers() -> None:
    monitor = AgentAudioMonitor(clock=lambda: 0.0)
    for seq in (65533, 65534, 1, 2):  # 65535 and 0 missing, across the wrap
        monitor.on_packet(packet(seq, b"\xf8\xff\xfe"))
    assert monitor.lost == 2


def test_shipped_prompt_is_package_data() -> None:
    with av.open(str(REPO_ROOT / "gateway" / "loadtest" / "prompt.wav")) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.sample_rate in (16_000, 48_000)
        assert stream.codec_context.channels == 1
    assert "prompt.wav" in (REPO_ROOT / "setup.cfg").read_text()


def test_gaps_during_the_testers_own_stalls_are_told_apart() -> None:
    stalls = LoopStalls()
    stalls.windows = [(1.0, 1.05), (3.0, 3.03)]
    assert stalls.explains(0.99, 1.06, GAP_S)  # 70 ms, 50 of them the tester stalled
    assert not stalls.explains(0.90, 1.06, GAP_S)  # 160 ms: 110 ms without the stall
    assert not stalls.explains(2.0, 2.1, GAP_S)  # no stall inside
    assert stalls.explains(2.99, 3.05, GAP_S)


async def test_stall_probe_sees_a_blocked_loop() -> None:
    stalls = LoopStalls()
    probe = asyncio.ensure_future(stalls.watch())
    await asyncio.sleep(0.06)
    time.sleep(0.1)  # noqa: ASYNC251 - block the loop, as a starved tester would be
    await asyncio.sleep(0.06)
    probe.cancel()
    await asyncio.gather(probe, return_exceptions=True)
    assert stalls.late_probes >= 1
    due, fired = stalls.windows[0]
    assert fired - due > 0.04
