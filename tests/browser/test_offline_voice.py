"""The offline model hears a real browser microphone: headless Chromium's fake
microphone, with the client's voice processing on (echo cancellation, noise
suppression, automatic gain), over WebRTC, into the default agent (Whisper tiny.en).

Pins down, for a clean, a noisy (pink noise at 10 dB SNR) and a quiet (-25 dB)
recording and an Opus-degraded one (24 kbit/s) of "what time is it now" (espeak-ng):
- a final user transcript holds the question's key words ("what", "time");
- the agent answers with the current time ("It is H:MM ..." with this hour).
"""

from __future__ import annotations

import subprocess
import wave
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import pytest
from google.adk.sessions import InMemorySessionService

from gateway.agent_bridge import AdkAgentConnector
from gateway.agents.default import build_default_agent
from gateway.models.local_live.recognizer import normalize
from tests.browser import cdp
from tests.browser.conftest import QUESTION, GatewayStarter
from tests.support.conditions import gain_db, through_opus, with_pink_noise

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

CONNECTION = "document.getElementById('connection-state').dataset.state"
USER_SAID = (
    "[...document.querySelectorAll('.msg.user:not(.partial) .body')]"
    ".map(e => e.textContent.trim()).filter(Boolean)"
)
AGENT_SAID = (
    "[...document.querySelectorAll('.msg.agent:not(.partial) .body')]"
    ".map(e => e.textContent.trim()).filter(Boolean)"
)
CONDITIONS: dict[str, Callable[[bytes], bytes]] = {
    "clean": lambda pcm: pcm,
    "pink noise 10 dB": lambda pcm: with_pink_noise(pcm, 10),
    "-25 dB": lambda pcm: gain_db(pcm, -25),
    # Coded once at 24 kbit/s before the microphone (a phone's or a lossy link's
    # codec), then again by the browser for the WebRTC path.
    "Opus 24 kbit/s": through_opus,
}


def microphone_wav(folder: Path, condition: str) -> Path:
    """The question at 16 kHz under `condition`, with quiet around it, as 48 kHz WAV."""
    raw, clean = folder / "raw.wav", folder / "clean.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), QUESTION], check=True, timeout=30)
    subprocess.run(
        ["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(clean), "pad", "0.3", "1.2"],
        check=True,
        timeout=30,
    )
    with wave.open(str(clean)) as w:
        pcm = w.readframes(w.getnframes())
    heard = folder / "heard-16k.wav"
    with wave.open(str(heard), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(CONDITIONS[condition](pcm))
    out = folder / "microphone.wav"
    subprocess.run(["sox", str(heard), "-r", "48000", str(out)], check=True, timeout=30)
    return out


@pytest.fixture
async def connector() -> AsyncIterator[AdkAgentConnector]:
    connector = AdkAgentConnector(
        build_default_agent(environ={}), InMemorySessionService(), app_name="offline-browser"
    )
    yield connector
    await connector.close()


@pytest.mark.parametrize("condition", list(CONDITIONS))
async def test_spoken_question_is_understood_and_answered(
    start_gateway: GatewayStarter, connector: AdkAgentConnector, tmp_path: Path, condition: str
) -> None:
    base = await start_gateway(connector)
    wav = microphone_wav(tmp_path, condition)
    profile = tmp_path / "profile"
    profile.mkdir()
    async with cdp.launch(profile, wav) as browser:
        page = await browser.new_page()
        await page.goto(f"{base}/")
        await page.wait_for(f"{CONNECTION} === 'idle'")
        before = datetime.now()
        await page.click("#call-button")
        await page.wait_for(f"{CONNECTION} === 'connected'", timeout_s=20)
        # The fake microphone loops the recording and starts before the call is
        # connected, so the first utterance heard may be cut; a later one is whole.
        users: list[str] = await page.wait_for(
            f"{USER_SAID}.some(t => /what time/i.test(t)) && {USER_SAID}", timeout_s=40
        )
        question = next(t for t in users if "what time" in normalize(t))
        assert {"what", "time"} <= set(normalize(question).split())
        answers: list[str] = await page.wait_for(
            f"{AGENT_SAID}.some(t => t.startsWith('It is ')) && {AGENT_SAID}", timeout_s=30
        )
        after = datetime.now()
        answer = next(t for t in answers if t.startswith("It is "))
        hours = {f"It is {t.hour % 12 or 12}:" for t in (before, after)}
        assert any(answer.startswith(h) for h in hours), answer
        await page.screenshot(tmp_path / "page.png")
        assert browser.page_errors == []
