"""Fixtures for the browser tests: spoken audio, a live gateway, headless Chromium.

- `speech_wav`: "what time is it now" spoken by espeak-ng, 48 kHz mono, with quiet
  around it; Chromium's fake microphone plays it in a loop.
- `start_gateway`: the gateway, composed by `gateway.app.create_app` with the agent
  `python -m gateway` serves (`build_adk_connector`), or with any connector, and
  any extra routes (`routes=`), on a free loopback port; ICE restricted to
  loopback. It also serves the seed-protocol test client at `/seed` (its files at
  `/static/`).
- `browser` / `page`: Debian's Chromium, headless, fake microphone, driven over CDP
  (`cdp.py`); every page ends with a screenshot and its console log under
  `test-artifacts/browser/`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.agent_api import AgentConnector
from gateway.app import build_adk_connector, create_app
from gateway.config import load_settings
from tests.browser import cdp
from tests.support import REPO_ROOT

ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
SEED_CLIENT = Path(__file__).resolve().parent / "seed_client"
QUESTION = "what time is it now"


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The question as a WAV for Chromium's fake microphone (espeak-ng, then sox)."""
    for tool in ("espeak-ng", "sox"):
        assert shutil.which(tool), f"{tool} is missing: run scripts/bootstrap --test"
    folder = tmp_path_factory.mktemp("speech")
    raw, wav = folder / "question-22k.wav", folder / "question.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), QUESTION], check=True, timeout=30)
    # 48 kHz mono s16; 0.3 s of quiet before and 1.2 s after, so each loop is a turn.
    subprocess.run(
        ["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(wav), "pad", "0.3", "1.2"],
        check=True,
        timeout=30,
    )
    return wav


GatewayStarter = Callable[..., Awaitable[str]]


@pytest.fixture
async def start_gateway() -> AsyncIterator[GatewayStarter]:
    """Start gateways; each returns its base URL. All are stopped after the test."""
    servers: list[TestServer] = []

    async def start(
        connector: AgentConnector | None = None,
        *,
        routes: Callable[[web.Application], None] | None = None,
        **overrides: Any,
    ) -> str:
        settings = load_settings({"ice_addresses": "127.0.0.1", **overrides}, environ={})
        app = create_app(settings, connector or build_adk_connector(settings))
        _add_seed_client(app)
        if routes is not None:
            routes(app)  # the test's own endpoints beside the gateway's (an app's token URL)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        await server.close()


def _add_seed_client(app: web.Application) -> None:
    async def seed_index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(SEED_CLIENT / "index.html")

    app.router.add_get("/seed", seed_index)
    app.router.add_static("/static/", SEED_CLIENT / "static")


@pytest.fixture
async def browser(
    tmp_path: Path, speech_wav: Path, request: pytest.FixtureRequest
) -> AsyncIterator[cdp.Browser]:
    """Headless Chromium with a fake microphone playing `speech_wav`.

    A test marked `@pytest.mark.chromium_flags(...)` adds flags (or, with
    `fake_ui=False`, leaves the permission prompt to answer itself: denied).
    """
    marker = request.node.get_closest_marker("chromium_flags")
    extra = list(marker.args) if marker else []
    fake_ui = marker.kwargs.get("fake_ui", True) if marker else True
    profile = tmp_path / "profile"
    profile.mkdir()
    async with cdp.launch(profile, speech_wav, extra, fake_ui=fake_ui) as chromium:
        yield chromium
    log = tmp_path / "chromium.log"
    if log.exists():
        _artifact(request, "chromium.log").write_bytes(log.read_bytes())


@pytest.fixture
async def page(browser: cdp.Browser, request: pytest.FixtureRequest) -> AsyncIterator[cdp.Page]:
    """A tab; its screenshot and console are saved as artifacts however the test ends."""
    tab = await browser.new_page()
    yield tab
    await tab.screenshot(_artifact(request, "png"))
    _artifact(request, "console.txt").write_text(
        "\n".join([*browser.console, "", "page errors:", *browser.page_errors])
    )


def _artifact(request: pytest.FixtureRequest, suffix: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.{suffix}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chromium_flags(*flags, fake_ui=True): extra Chromium flags for a test"
    )
