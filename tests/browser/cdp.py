"""Drives headless Chromium over the Chrome DevTools Protocol, with aiohttp only.

A small, typed client for the few CDP commands the browser tests need: launch
Debian's `/usr/bin/chromium` with a fake microphone, open a page, evaluate
JavaScript, click and type with real input events, wait for a condition, capture
a screenshot, and collect console messages and uncaught page errors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

logger = logging.getLogger(__name__)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_TIMEOUT_S = 20.0
COMMAND_TIMEOUT_S = 15.0


class CdpError(Exception):
    """A CDP command failed, or the page threw."""


def chromium_flags(
    user_data_dir: Path, fake_audio: Path, extra: list[str], *, fake_ui: bool = True
) -> list[str]:
    """Launch flags; `fake_ui=False` answers permission prompts with "deny"."""
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-features=MediaRouter,OptimizationHints",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={user_data_dir}",
        "--use-fake-ui-for-media-stream" if fake_ui else "--deny-permission-prompts",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake_audio}",
        "--remote-debugging-port=0",
        "--window-size=1000,900",
        *extra,
        "about:blank",
    ]


class Browser:
    """One Chromium process and its DevTools connection."""

    def __init__(self, process: asyncio.subprocess.Process, ws: aiohttp.ClientWebSocketResponse):
        self.process = process
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: dict[str, list[asyncio.Queue[dict[str, Any]]]] = {}
        self.console: list[str] = []
        self.page_errors: list[str] = []
        self._reader = asyncio.create_task(self._read(), name="cdp/reader")

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                self._on_event(data)
        for future in self._pending.values():
            future.set_exception(CdpError("browser connection closed"))

    def _on_event(self, data: dict[str, Any]) -> None:
        method, params = data.get("method", ""), data.get("params", {})
        if method == "Runtime.consoleAPICalled":
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append(f"{params['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.page_errors.append(str(text))
        for queue in self._listeners.get(method, []):
            queue.put_nowait(params)

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session_id: str | None = None
    ) -> dict[str, Any]:
        command_id = next(self._ids)
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        await self._ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, COMMAND_TIMEOUT_S)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error'].get('message')}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def new_page(self) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        await page.send("Runtime.enable")
        await page.send("Page.enable")
        return page

    async def close(self) -> None:
        with contextlib.suppress(CdpError, TimeoutError, ConnectionError):
            await asyncio.wait_for(self.send("Browser.close"), 5)
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Page:
    """One tab, addressed through its flattened CDP session."""

    def __init__(self, browser: Browser, session_id: str) -> None:
        self.browser = browser
        self.session_id = session_id

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, self.session_id)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})
        await self.wait_for("document.readyState === 'complete'", timeout_s=10)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CdpError(f"page threw: {text}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, timeout_s: float = 15.0) -> Any:
        """Poll `expression` until it is truthy; fail saying what the page showed."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                body = await self.evaluate("document.body ? document.body.innerText : ''")
                raise AssertionError(
                    f"timed out after {timeout_s} s waiting for {expression!r}; page text:\n"
                    f"{body}\nconsole:\n" + "\n".join(self.browser.console[-30:])
                )
            await asyncio.sleep(0.1)

    async def click(self, selector: str) -> None:
        """A real mouse click (user activation) in the middle of the element."""
        box = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        if box is None:
            raise AssertionError(f"no element {selector}")
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1},
            )

    async def type_text(self, selector: str, text: str) -> None:
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.send("Input.insertText", {"text": text})

    async def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            await self.send(
                "Input.dispatchKeyEvent",
                {"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
                 **({"text": "\r"} if kind == "keyDown" else {})},
            )  # fmt: skip

    async def press_key(self, key: str, code: str, key_code: int) -> None:
        for kind in ("rawKeyDown", "keyUp"):
            await self.send(
                "Input.dispatchKeyEvent",
                {"type": kind, "key": key, "code": code, "windowsVirtualKeyCode": key_code},
            )

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def launch(
    user_data_dir: Path,
    fake_audio: Path,
    extra_flags: list[str] | None = None,
    *,
    fake_ui: bool = True,
) -> AsyncIterator[Browser]:
    """Start headless Chromium; always kills it (and its children) on the way out.

    Its stderr goes to `chromium.log` next to the profile (kept as an artifact).
    """
    log_path = user_data_dir.parent / "chromium.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *chromium_flags(user_data_dir, fake_audio, extra_flags or [], fake_ui=fake_ui),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    session: aiohttp.ClientSession | None = None
    browser: Browser | None = None
    try:
        url = await asyncio.wait_for(_devtools_url(process, user_data_dir), LAUNCH_TIMEOUT_S)
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(url, max_msg_size=64 * 1024 * 1024)
        browser = Browser(process, ws)
        yield browser
    finally:
        if browser is not None:
            await browser.close()
        if session is not None:
            await session.close()
        await _stop(process)


async def _devtools_url(process: asyncio.subprocess.Process, user_data_dir: Path) -> str:
    """Chromium writes its DevTools port and browser path to `DevToolsActivePort`."""
    port_file = user_data_dir / "DevToolsActivePort"
    while process.returncode is None:
        lines = port_file.read_text().split() if port_file.exists() else []
        if len(lines) >= 2:
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        await asyncio.sleep(0.05)
    raise CdpError(f"chromium exited ({process.returncode}) before DevTools was ready")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
