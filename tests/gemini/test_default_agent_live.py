"""`python -m gateway` with only `GOOGLE_API_KEY` set: the default agent on today's model.

A new user sets an API key and nothing else. Pointed at the double playing
`gemini-3.8-live` (the service's URL and certificate are the only other variables,
as google-genai reads them), the gateway must pick the current default model, pass
its start-up check, and serve a voice call and a text-mode call end to end.

Pins down: no `GATEWAY_GEMINI_MODEL` -> the setup asks for `models/gemini-3.8-live`
with AUDIO responses, none of the fields 3.8 refuses, and the default agent's tools;
a spoken turn is answered with audio; a typed question in text mode is answered with
`text` events and no audio.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp

from tests.gemini.conftest import GOOD_KEY
from tests.support.gateway_process import serving
from tests.support.live_api_double import LiveApiDouble
from tests.support.peers import HeadlessCaller, tone_pcm


async def test_only_an_api_key(live_double: LiveApiDouble, tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GATEWAY_", "GOOGLE_", "GEMINI_"))
    }
    env |= {
        "GOOGLE_API_KEY": GOOD_KEY,
        "GOOGLE_GEMINI_BASE_URL": live_double.base_url,
        "SSL_CERT_FILE": str(live_double.cert.cert_path),
    }
    async with (
        serving("--workers", "1", "--session-url", "memory://", env=env,
                log=tmp_path / "gateway.log") as gateway,
        aiohttp.ClientSession() as http,
    ):  # fmt: skip
        voice = HeadlessCaller()
        try:
            assert (await voice.dial(http, gateway.base)).status == 201
            await voice.wait_connected()
            spoke = time.monotonic()
            voice.mic.play_pcm(tone_pcm(0.6))
            await voice.wait_message(type="turn_complete", limit_s=15)
            async with asyncio.timeout(5):
                while sum(f.rms > 1000 for f in voice.frames if f.at >= spoke) < 20:
                    await asyncio.sleep(0.05)
        finally:
            await voice.hang_up(http, gateway.base)
            await voice.close()
        typed = HeadlessCaller()
        try:
            assert (await typed.dial(http, gateway.base, "?mode=text")).status == 201
            await typed.wait_channel_open()
            typed.send({"type": "text", "text": "what time is it"})
            answer = await typed.wait_message(type="text", final=True, limit_s=15)
            assert answer["text"]
        finally:
            await typed.hang_up(http, gateway.base)
            await typed.close()
    setups = [c.setup for c in live_double.connections]
    assert {s["model"] for s in setups} == {"models/gemini-3.8-live"}
    call_setup = setups[-1]
    assert call_setup["generationConfig"]["responseModalities"] == ["AUDIO"]
    assert "thinkingConfig" not in call_setup["generationConfig"]
    assert "proactivity" not in call_setup
    declared = [d["name"] for t in call_setup["tools"] for d in t.get("functionDeclarations", [])]
    assert "get_current_time" in declared
    assert not live_double.refused_settings
