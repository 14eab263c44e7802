"""The browser client over HTTPS from `python -m gateway --certfile --keyfile`.

A browser on another machine reaches the gateway by a name, not `localhost`; Chromium
resolves the test name `gw.test` to 127.0.0.1 (`--host-resolver-rules`), so the page's
origin is not loopback while the traffic stays on it, and trusts the certificate made
at test time by its public key (`--ignore-certificate-errors-spki-list`). Pins down:
- over plain HTTP from such a name the page is not a secure context: the browser
  offers no microphone and the client says it needs https;
- over HTTPS from the gateway's own TLS the page is a secure context, the microphone
  opens, and a voice call (offer over HTTPS, media over WebRTC) is transcribed and
  answered; hanging up leaves no call behind.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.browser import cdp
from tests.browser.conftest import GatewayStarter
from tests.browser.test_client import CONNECTION, NOTICE, assert_voice_conversation, open_client
from tests.support.fakes import FakeAgentConnector
from tests.support.gateway_process import GatewayProcess, serving
from tests.support.live_api_double.certs import SelfSignedCert, make_self_signed_cert

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

NAME = "gw.test"


def spki_sha256(cert: SelfSignedCert) -> str:
    """Base64 SHA-256 of the certificate's SubjectPublicKeyInfo, as Chromium pins it."""
    public_key = x509.load_pem_x509_certificate(cert.cert_path.read_bytes()).public_key()
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture
def cert(tmp_path: Path) -> SelfSignedCert:
    return make_self_signed_cert(tmp_path / "tls")


@pytest.fixture
async def tls_gateway(cert: SelfSignedCert, tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    async with serving(
        "--agent", "gateway.agents.default:root_agent",
        "--certfile", str(cert.cert_path), "--keyfile", str(cert.key_path),
        log=tmp_path / "gateway.log", tls=cert.client_context(),
    ) as gateway:  # fmt: skip
        yield gateway


@pytest.fixture
async def named_browser(
    tmp_path: Path, speech_wav: Path, cert: SelfSignedCert
) -> AsyncIterator[cdp.Browser]:
    profile = tmp_path / "profile"
    profile.mkdir()
    flags = [
        f"--host-resolver-rules=MAP {NAME} 127.0.0.1",
        f"--ignore-certificate-errors-spki-list={spki_sha256(cert)}",
    ]
    async with cdp.launch(profile, speech_wav, flags) as chromium:
        yield chromium


def named(base: str, scheme: str) -> str:
    """`base` (`scheme://127.0.0.1:port`) under the test name."""
    port = base.rsplit(":", 1)[1]
    return f"{scheme}://{NAME}:{port}"


async def test_the_microphone_needs_https_off_loopback(
    named_browser: cdp.Browser, start_gateway: GatewayStarter
) -> None:
    plain = await start_gateway(FakeAgentConnector())
    page = await named_browser.new_page()
    await open_client(page, named(plain, "http") + "/")
    assert await page.evaluate("window.isSecureContext") is False
    assert await page.evaluate("navigator.mediaDevices === undefined") is True
    await page.click("#call-button")
    notice = await page.wait_for(NOTICE, timeout_s=10)
    assert "https" in notice
    await page.wait_for(f"{CONNECTION} === 'idle'")


async def test_a_voice_call_from_the_page_served_over_https(
    named_browser: cdp.Browser, tls_gateway: GatewayProcess
) -> None:
    page = await named_browser.new_page()
    url = named(tls_gateway.base, "https") + "/"
    await open_client(page, url)
    assert await page.evaluate("window.isSecureContext") is True
    assert await page.evaluate("location.protocol") == "https:"
    await page.click("#call-button")
    await assert_voice_conversation(page)
    await page.click("#call-button")
    await page.wait_for(f"{CONNECTION} === 'idle'")
    async with asyncio.timeout(10):
        while (await tls_gateway.get("/healthz"))["calls"]:
            await asyncio.sleep(0.1)
    assert named_browser.page_errors == []
    assert '"POST /calls" 201' in tls_gateway.output()
