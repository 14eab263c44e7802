"""`python -m gateway` refuses to start with a session store or Gemini setting that
cannot work, saying which, instead of failing on the first call.

Pins down: a URL of an unsupported database, an unreachable PostgreSQL server, a bad
`GATEWAY_GEMINI_*` value, half a Vertex AI configuration, a retired live model and a
setting the live model refuses each end the process with a non-zero status and a
one-line reason (no traceback, no password), within seconds.
"""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from tests.support import REPO_ROOT


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"GATEWAY_SESSION_URL": "mysql+aiomysql://u:hunter2@h/db"}, "unsupported database"),
        (
            {"GATEWAY_SESSION_URL": "postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/x"},
            "session store unavailable",
        ),
        ({"GATEWAY_GEMINI_VAD_SILENCE_MS": "-5"}, "GATEWAY_GEMINI_VAD_SILENCE_MS"),
        ({"GOOGLE_GENAI_USE_VERTEXAI": "true"}, "GOOGLE_CLOUD_PROJECT"),
        (
            {
                "GOOGLE_API_KEY": "k",
                "GATEWAY_GEMINI_MODEL": "gemini-2.5-flash-native-audio-preview-09-2025",
            },
            "gemini-2.5-flash-native-audio-preview-09-2025 was shut down",
        ),
        (
            {"GOOGLE_API_KEY": "k", "GATEWAY_GEMINI_THINKING_LEVEL": "high"},
            "gemini-3.8-live does not accept: GATEWAY_GEMINI_THINKING_LEVEL",
        ),
    ],
)
async def test_bad_settings_stop_start_up(env: dict[str, str], reason: str) -> None:
    environ = {**os.environ, "GATEWAY_PORT": "0", "GATEWAY_SESSION_URL": "memory://", **env}
    environ.pop("GOOGLE_CLOUD_PROJECT", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        cwd=REPO_ROOT,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(30):
        output = (await process.communicate())[0].decode()
    assert process.returncode not in (0, None)
    last = output.strip().splitlines()[-1]
    assert last.startswith("adk-webrtc-gateway: ")
    assert reason in last
    assert "hunter2" not in output
    assert "Traceback" not in output
