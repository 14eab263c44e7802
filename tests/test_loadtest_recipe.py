"""The load-test recipe in docs/loadtest.md works as written.

The two commands of the "Running it" block are read from the document and run with
only the port and the sizes made smaller: the gateway with its default ICE addresses
(no `--ice-addresses`: on loopback it must offer a loopback candidate, since the
tester, calling a loopback URL, offers only 127.0.0.1), then the load tester. Every
call must complete and hear the agent. A tester and gateway that cannot reach each
other get a failure that says which addresses each side offered and what to change.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
from pathlib import Path

from tests.support import REPO_ROOT
from tests.support.gateway_process import free_port, serving

RECIPE = REPO_ROOT / "docs" / "loadtest.md"


def recipe_commands() -> tuple[list[str], list[str]]:
    """The gateway's and the load tester's argv from the doc's first `sh` block."""
    block = RECIPE.read_text().split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    commands = [shlex.split(line.split("#", 1)[0]) for line in lines if not line.startswith("#")]
    gateway = next(c for c in commands if c[:3] == ["python", "-m", "gateway"])
    tester = next(c for c in commands if c[:3] == ["python", "-m", "gateway.loadtest"])
    return [a for a in gateway[3:] if a != "&"], tester[3:]


def smaller(args: list[str], port: int, report: Path) -> list[str]:
    """The tester's arguments at this port, a few short calls, and our report path."""
    sizes = {"--calls": "4", "--rate": "4", "--duration": "3", "--report": str(report)}
    out = [re.sub(r"127\.0\.0\.1:8080", f"127.0.0.1:{port}", a) for a in args]
    for i, arg in enumerate(out[:-1]):
        if arg in sizes:
            out[i + 1] = sizes[arg]
    return out


async def test_the_documented_recipe_completes_every_call(tmp_path: Path) -> None:
    gateway_args, tester_args = recipe_commands()
    assert "--ice-addresses" not in gateway_args  # the recipe relies on the defaults
    port = free_port()
    report = tmp_path / "report.json"
    async with serving(*gateway_args, port=port, loopback_ice=False, log=tmp_path / "gw.log"):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.loadtest", *smaller(tester_args, port, report),
            cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(90):
            out, err = await process.communicate()
    assert process.returncode == 0, out.decode() + err.decode()
    result = json.loads(report.read_text())
    assert result["calls"]["completed"] == 4
    assert result["audio"]["replies"] >= 4


async def test_unreachable_ice_is_explained(tmp_path: Path) -> None:
    """A gateway and a tester with no address family in common (IPv4 loopback
    against IPv6 loopback): the failure names both sides' addresses."""
    async with serving("--agent", "gateway.agents.scripted:root_agent", "--workers", "1",
                       "--session-url", "memory://", "--ice-addresses", "127.0.0.2",
                       loopback_ice=False) as gateway:  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.loadtest", gateway.base, "--calls", "1",
            "--duration", "1", "--connect-timeout", "3", "--quiet",
            "--ice-addresses", "::1",
            cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):
            out, _ = await process.communicate()
    text = out.decode()
    assert process.returncode == 1, text
    assert "no media within 3 s: ICE" in text
    assert "::1" in text
    assert "the gateway answered" in text  # (aiortc answers an IPv6-only offer with none)
    assert "--ice-addresses" in text
