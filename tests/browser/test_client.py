"""The web client in real headless Chromium against a live gateway.

Pins down:
- a voice call over WebRTC: the connection reaches `connected`, the fake
  microphone's spoken question moves the level meter and becomes a user transcript,
  the agent's reply appears, the indicator goes from listening to speaking, and
  the agent's audio arrives on the remote track with energy;
- text mode: a typed question is answered by text that streams in (several
  partial states before the final one), without opening the microphone;
- text typed during a voice call is answered too;
- mute silences the microphone (track disabled, meter still) and unmutes;
- hang-up returns every control to idle and the gateway ends the call;
- the WebSocket fallback, forced or chosen because WebRTC cannot connect, passes
  the same voice test and is labelled as a fallback;
- barge-in: on `interrupted` the indicator says so, the answer is marked cut,
  and the agent's queued audio stops within a second and a half (both transports);
- resilience: a dropped call reconnects to the same session; a network change moves
  the call to a new one continuing the session, and a call moved to another device
  says so and stays ended; a denied microphone,
  a server at capacity (503) and a fatal agent error each give a clear message;
- a phone-sized screen has no horizontal scrolling, and a call can be started
  and hung up with the keyboard alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.agent_api import (
    AgentAudio,
    AgentError,
    AgentEvent,
    AgentInterrupted,
    Modality,
    Transcript,
)
from tests.browser import cdp
from tests.browser.conftest import GatewayStarter
from tests.support.fakes import FakeAgentConnector, agent_tone
from tests.support.peers import HeadlessCaller

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

CONNECTION = "document.getElementById('connection-state').dataset.state"
NOTICE = (
    "(document.getElementById('notice').hidden ? ''"
    " : document.getElementById('notice-text').textContent)"
)


def said(role: str) -> str:
    """JS: the finished messages of `role` in the conversation, as non-empty strings."""
    return (
        f"[...document.querySelectorAll('.msg.{role}:not(.partial) .body')]"
        ".map(e => e.textContent.trim()).filter(Boolean)"
    )


USER_SAID, AGENT_SAID = said("user"), said("agent")
MIC_PEAK = "window.__micPeak"
AGENT_STATES_SEEN = "[...window.__agentStates]"
#: Samples the level meter's peak and every agent indicator state, every 50 ms.
WATCH_INDICATORS = """(() => { window.__micPeak = 0; window.__agentStates = new Set();
  const m = document.getElementById('mic-level');
  const a = document.getElementById('agent-indicator');
  setInterval(() => { window.__micPeak = Math.max(window.__micPeak, m.value);
                      window.__agentStates.add(a.dataset.state); }, 50); })()"""
INBOUND_AUDIO = """(async () => { let r = null;
  (await window.gatewayClient.call.pc.getStats()).forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') r = {bytes: s.bytesReceived,
      energy: s.totalAudioEnergy, samples: s.totalSamplesReceived}; });
  return r && r.energy > 0 && r.bytes > 1000 ? r : null; })()"""
MUTED = """({ pressed: document.getElementById('mute-button').getAttribute('aria-pressed'),
  trackEnabled: window.gatewayClient.state.mic.getAudioTracks()[0].enabled })"""
#: Records every data-channel message the page receives, in `window.__received`.
RECORD_CHANNEL = """(() => { window.__received = [];
  const create = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = create.apply(this, args);
    channel.addEventListener('message', (e) => window.__received.push(JSON.parse(e.data)));
    return channel; }; })()"""
#: A network that only allows relayed media, with no TURN server: ICE cannot connect.
RELAY_ONLY = """(() => { const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(config = {}) { super({ ...config, iceTransportPolicy: 'relay' }); } }; })()"""


def offline_model_present() -> bool:
    """True when the default agent understands speech (not the scripted test model)."""
    from gateway.agents.default import root_agent

    return "scripted" not in str(getattr(root_agent, "model", "scripted"))


async def open_client(page: cdp.Page, url: str) -> None:
    await page.goto(url)
    await page.wait_for(f"{CONNECTION} === 'idle'")
    await page.evaluate(WATCH_INDICATORS)


async def start_call(page: cdp.Page, url: str) -> None:
    """Open the client at `url`, press Call, wait until the call is connected."""
    await open_client(page, url)
    await page.click("#call-button")
    await page.wait_for(f"{CONNECTION} === 'connected'", timeout_s=20)


async def assert_voice_conversation(page: cdp.Page) -> tuple[list[str], list[str]]:
    """The spoken question becomes a user transcript, then the agent answers."""
    await page.wait_for(f"{CONNECTION} === 'connected'", timeout_s=20)
    users: list[str] = await page.wait_for(f"{USER_SAID}.length && {USER_SAID}", timeout_s=25)
    agents: list[str] = await page.wait_for(f"{AGENT_SAID}.length && {AGENT_SAID}", timeout_s=25)
    assert users[0]
    assert agents[0]
    if offline_model_present():
        # Chromium's fake microphone loops the question and starts before the call
        # connects, so the first utterance heard may be cut; a later one is whole.
        users = await page.wait_for(
            f"{USER_SAID}.some(t => t.toLowerCase().includes('time')) && {USER_SAID}",
            timeout_s=25,
        )
    assert await page.evaluate(MIC_PEAK) > 0.01, "the microphone level meter never moved"
    states = await page.wait_for(
        f"{AGENT_STATES_SEEN}.includes('speaking') && {AGENT_STATES_SEEN}", timeout_s=10
    )
    assert {"listening", "speaking"} <= set(states)
    return users, agents


async def healthz_calls(base: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/healthz") as response:
        calls: int = (await response.json())["calls"]
        return calls


async def test_voice_call_over_webrtc(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    base = await start_gateway()
    await open_client(page, f"{base}/")
    await page.click("#call-button")
    await assert_voice_conversation(page)
    assert await page.evaluate("window.gatewayClient.call.transport") == "webrtc"
    assert await page.evaluate("window.gatewayClient.call.pc.connectionState") == "connected"
    assert await page.evaluate("document.getElementById('transport-label').hidden") is True
    # Audible energy and more than a few packets (silence is 3-byte packets).
    inbound = await page.wait_for(INBOUND_AUDIO, timeout_s=10)
    assert inbound["bytes"] > 1000
    assert await page.evaluate("document.getElementById('agent-audio').srcObject !== null")
    assert await healthz_calls(base) == 1

    answers = len(await page.evaluate(AGENT_SAID))
    await page.type_text("#text-input", "And what day is it?")  # text during a voice call
    await page.press_enter()
    await page.wait_for(f"{AGENT_SAID}.length > {answers}", timeout_s=20)
    assert "And what day is it?" in await page.evaluate(USER_SAID)
    assert browser.page_errors == []


async def test_text_mode_streams_the_answer(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    base = await start_gateway()
    await page.send("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_CHANNEL})
    await open_client(page, f"{base}/")
    await page.type_text("#text-input", "What time is it now?")
    await page.press_enter()
    agents = await page.wait_for(f"{AGENT_SAID}.length && {AGENT_SAID}", timeout_s=20)
    texts = [m for m in await page.evaluate("window.__received") if m["type"] == "text"]
    chunks = [m["text"] for m in texts if not m["final"]]
    assert len(chunks) >= 2, f"the answer did not stream: {texts}"
    assert texts[-1]["final"] is True
    assert agents == [texts[-1]["text"]]
    assert "".join(chunks) == agents[0]
    assert await page.evaluate(USER_SAID) == ["What time is it now?"]
    assert await page.evaluate(CONNECTION) == "connected"
    assert await page.evaluate("window.gatewayClient.state.mic") is None
    assert await page.evaluate("document.getElementById('mute-button').disabled") is True
    assert browser.page_errors == []


async def test_hang_up_returns_the_ui_to_idle(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    base = await start_gateway()
    await start_call(page, f"{base}/")
    assert await page.evaluate("document.getElementById('call-button').textContent") == "Hang up"
    await page.click("#mute-button")
    assert await page.evaluate(MUTED) == {"pressed": "true", "trackEnabled": False}
    await asyncio.sleep(0.5)  # the meter falls silent while muted
    await page.evaluate("window.__micPeak = 0")
    await asyncio.sleep(1.0)
    assert await page.evaluate(MIC_PEAK) < 0.01
    await page.click("#mute-button")
    assert await page.evaluate(MUTED) == {"pressed": "false", "trackEnabled": True}
    await page.click("#call-button")
    await page.wait_for(f"{CONNECTION} === 'idle'")
    ui = await page.evaluate(
        """({ call: document.getElementById('call-button').textContent,
              action: document.getElementById('call-button').dataset.action,
              mute: document.getElementById('mute-button').disabled,
              textMode: document.getElementById('text-mode-button').disabled,
              agent: document.getElementById('agent-indicator').dataset.state,
              meter: document.getElementById('mic-level').value,
              audio: document.getElementById('agent-audio').srcObject })"""
    )
    assert ui == {"call": "Start voice call", "action": "start", "mute": True,
                  "textMode": False, "agent": "idle", "meter": 0, "audio": None}  # fmt: skip
    for _ in range(50):
        if await healthz_calls(base) == 0:
            break
        await asyncio.sleep(0.1)
    assert await healthz_calls(base) == 0
    assert browser.page_errors == []


async def test_websocket_fallback_passes_the_voice_test(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    base = await start_gateway()
    await open_client(page, f"{base}/?transport=ws")
    await page.click("#call-button")
    await assert_voice_conversation(page)
    assert await page.evaluate("window.gatewayClient.call.transport") == "websocket"
    assert await page.evaluate("document.getElementById('transport-label').hidden") is False
    played = await page.wait_for(
        "window.gatewayClient.call.playbackState.peak > 0.05"
        " && window.gatewayClient.call.playbackState", timeout_s=10)  # fmt: skip
    assert played["peak"] > 0.05
    assert browser.page_errors == []


async def test_falls_back_to_websocket_when_webrtc_cannot_connect(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    """A network that only allows relayed media and offers no TURN server: ICE fails."""
    base = await start_gateway()
    await page.send("Page.addScriptToEvaluateOnNewDocument", {"source": RELAY_ONLY})
    await open_client(page, f"{base}/?connect_timeout_s=3")
    await page.click("#call-button")
    await page.wait_for("!document.getElementById('transport-label').hidden", timeout_s=10)
    await assert_voice_conversation(page)
    assert await page.evaluate("window.gatewayClient.call.transport") == "websocket"
    assert "WebSocket fallback" in await page.evaluate(NOTICE)
    assert browser.page_errors == []


async def test_a_dropped_call_reconnects_to_the_same_session(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    base = await start_gateway()
    await start_call(page, f"{base}/")
    session_id = await page.wait_for("window.gatewayClient.state.sessionId", timeout_s=10)
    location = await page.evaluate("window.gatewayClient.call.location")
    async with aiohttp.ClientSession() as http, http.delete(location) as response:
        assert response.status == 204  # the gateway ends the call under the client
    await page.wait_for(f"{CONNECTION} === 'reconnecting'", timeout_s=15)
    await page.wait_for(
        f"{CONNECTION} === 'connected' && window.gatewayClient.call.location !== {location!r}",
        timeout_s=20,
    )
    assert await page.evaluate("window.gatewayClient.state.sessionId") == session_id
    conversation = await page.evaluate("document.getElementById('conversation').innerText")
    assert "reconnecting" in conversation
    await page.wait_for(f"{AGENT_SAID}.length", timeout_s=25)  # the conversation goes on
    assert browser.page_errors == []


async def test_a_network_change_moves_the_call_to_a_new_one(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    """aiortc cannot restart ICE: on a network change the client re-offers with its
    session id, and the old call ends (the client's hang-up, or the gateway's move)."""
    base = await start_gateway()
    await start_call(page, f"{base}/")
    session_id = await page.wait_for("window.gatewayClient.state.sessionId", timeout_s=10)
    location = await page.evaluate("window.gatewayClient.call.location")
    await page.evaluate("window.dispatchEvent(new Event('online'))")
    await page.wait_for(
        f"{CONNECTION} === 'connected' && window.gatewayClient.call.location !== {location!r}",
        timeout_s=20,
    )
    assert await page.evaluate("window.gatewayClient.state.sessionId") == session_id
    async with asyncio.timeout(10):
        while await healthz_calls(base) != 1:
            await asyncio.sleep(0.1)
    async with aiohttp.ClientSession() as http, http.delete(location) as response:
        assert response.status == 404  # the old call is gone
    conversation = await page.evaluate("document.getElementById('conversation').innerText")
    assert "network changed" in conversation
    await page.wait_for(f"{AGENT_SAID}.length", timeout_s=25)  # the conversation goes on
    assert browser.page_errors == []


async def test_a_call_moved_elsewhere_is_explained_and_not_taken_back(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    """Another device of the same user continues the conversation: this tab says so and
    stays idle instead of reconnecting (which would take the conversation back)."""
    base = await start_gateway()
    await start_call(page, f"{base}/")
    session_id = await page.wait_for("window.gatewayClient.state.sessionId", timeout_s=10)
    user_id = await page.evaluate("localStorage.getItem('gateway-user-id')")
    other = HeadlessCaller()
    try:
        async with aiohttp.ClientSession() as http:
            query = f"?user_id={user_id}&session_id={session_id}"
            dialled = await other.dial(http, base, query)
            assert dialled.status == 201, dialled.body
        await other.wait_connected()
        await page.wait_for(f"{NOTICE}.includes('another call')", timeout_s=10)
        await page.wait_for(f"{CONNECTION} === 'idle'", timeout_s=10)
        await asyncio.sleep(2.0)  # a reconnect would have started by now
        assert await page.evaluate(CONNECTION) == "idle"
        assert await healthz_calls(base) == 1
        assert not [m for m in other.messages if m.get("code") == "moved"]
    finally:
        await other.close()
    assert browser.page_errors == []


@pytest.mark.chromium_flags(fake_ui=False)
async def test_a_denied_microphone_is_explained(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    base = await start_gateway()
    await open_client(page, f"{base}/")
    await page.click("#call-button")
    notice = await page.wait_for(NOTICE, timeout_s=10)
    assert "Microphone access was denied" in notice
    assert await page.evaluate(CONNECTION) == "idle"
    assert await healthz_calls(base) == 0
    assert browser.page_errors == []


async def test_a_server_at_capacity_is_explained(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    base = await start_gateway(max_calls=1)
    other = await browser.new_page()
    await start_call(other, f"{base}/")
    await open_client(page, f"{base}/")
    await page.click("#call-button")
    notice = await page.wait_for(NOTICE, timeout_s=10)
    assert "at capacity" in notice
    assert "Trying again in" in notice
    assert await page.evaluate(CONNECTION) == "reconnecting"
    await other.click("#call-button")  # the other caller hangs up: the retry gets in
    await page.wait_for(f"{CONNECTION} === 'connected'", timeout_s=20)
    assert await page.evaluate(NOTICE) == ""  # the capacity message went with the wait
    assert browser.page_errors == []


AGENT_LEVEL = "window.gatewayClient.call.agentLevel()"


@pytest.mark.parametrize("transport", ["webrtc", "ws"])
async def test_barge_in_shows_interrupted_and_cuts_the_agent_audio(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page, transport: str
) -> None:
    connector = FakeAgentConnector()
    base = await start_gateway(connector)
    await start_call(page, f"{base}/?transport={transport}")
    session = connector.last
    session.emit(Transcript("agent", "Let me tell you a long story", False))
    session.emit(AgentAudio(agent_tone(4.0)))
    await page.wait_for(f"(async () => (await {AGENT_LEVEL}) > 0.05)()", timeout_s=10)
    session.emit(AgentInterrupted())  # as the agent does when the caller barges in
    await page.wait_for("!!document.querySelector('.msg.agent.interrupted')", timeout_s=5)
    await page.wait_for(f"(async () => (await {AGENT_LEVEL}) < 0.01)()", timeout_s=1.5)
    assert "interrupted" in await page.evaluate(AGENT_STATES_SEEN)
    assert await page.evaluate(AGENT_SAID) == ["Let me tell you a long story …"]
    assert browser.page_errors == []


class FailingSession:
    """An agent that fails on the first thing it is told."""

    session_id = "failing-session"

    def __init__(self) -> None:
        self._failed = asyncio.Event()

    def send_audio(self, pcm: bytes) -> None:
        pass

    def send_text(self, text: str) -> None:
        self._failed.set()

    async def events(self) -> AsyncIterator[AgentEvent]:
        await self._failed.wait()
        yield AgentError("agent_error", "the model refused to answer", fatal=True)


class FailingConnector:
    @contextlib.asynccontextmanager
    async def open_session(
        self, *, user_id: str, session_id: str | None, modality: Modality, call_id: str = ""
    ) -> AsyncIterator[Any]:
        yield FailingSession()


async def test_a_fatal_agent_error_is_explained_and_ends_the_call(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    base = await start_gateway(FailingConnector())
    await open_client(page, f"{base}/")
    await page.type_text("#text-input", "hello")
    await page.press_enter()
    notice = await page.wait_for(NOTICE, timeout_s=20)
    assert notice == "The agent ran into a problem: the model refused to answer"
    await page.wait_for(f"{CONNECTION} === 'idle'")
    assert browser.page_errors == []


async def test_phone_screen_and_keyboard_only(
    start_gateway: GatewayStarter, browser: cdp.Browser, page: cdp.Page
) -> None:
    base = await start_gateway()
    await page.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
    )
    await open_client(page, f"{base}/")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    for _ in range(12):  # Tab through the page to the call button
        await page.press_key("Tab", "Tab", 9)
        if await page.evaluate("document.activeElement.id") == "call-button":
            break
    assert await page.evaluate("document.activeElement.id") == "call-button"
    await page.press_enter()
    await page.wait_for(f"{CONNECTION} === 'connected'", timeout_s=20)
    assert await page.evaluate("document.activeElement.id") == "call-button"
    await page.press_enter()  # the same button now hangs up
    await page.wait_for(f"{CONNECTION} === 'idle'")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    assert browser.page_errors == []
