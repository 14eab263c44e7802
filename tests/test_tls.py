"""`python -m gateway --certfile --keyfile`: HTTPS and WSS served by the gateway itself.

Pins down, with a certificate made at test time and the client trusting only it:
- one process: `/` and `/healthz` over HTTPS; a real call whose offer and hang-up go
  over HTTPS connects and the caller hears the agent; the seed and bidi-demo
  WebSockets work over WSS; plain HTTP gets no answer on that port, TLS 1.2 is the oldest served;
- `--workers 2`: both workers serve HTTPS, calls land on both and are routed and
  hung up whichever worker receives the request;
- at the edge (in process): a connection that never finishes its handshake, and one
  that finishes it and sends no request, are both cut at the header timeout; past
  the connection cap a new connection is closed without an answer and counted;
- a certificate or key that cannot serve (missing, not PEM, another certificate's
  key, an encrypted key, one without the other) stops start-up with exit status 1
  and one line naming the file and the cause, never a traceback, with one process
  or several; TLS does not relax the rule that off loopback needs authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization

from gateway.app import create_app
from gateway.cluster.supervisor import listen
from gateway.http_server import HttpLimits, PublicServer
from gateway.tls import server_context
from tests.conftest import gateway_settings
from tests.support import REPO_ROOT
from tests.support.fakes import FakeAgentConnector
from tests.support.gateway_process import GatewayProcess, serving
from tests.support.live_api_double.certs import SelfSignedCert, make_self_signed_cert
from tests.support.peers import HeadlessCaller, assert_answered, seed_turn

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SCRIPTED = "gateway.agents.scripted:root_agent"


@pytest.fixture
def cert(tmp_path: Path) -> SelfSignedCert:
    return make_self_signed_cert(tmp_path / "tls")


@pytest.fixture
async def https_gateway(tmp_path: Path, cert: SelfSignedCert) -> AsyncIterator[GatewayProcess]:
    async with serving(
        "--agent", SCRIPTED, "--session-url", "memory://", "--workers", "1",
        "--certfile", str(cert.cert_path), "--keyfile", str(cert.key_path),
        log=tmp_path / "gateway.log", tls=cert.client_context(),
    ) as gateway:  # fmt: skip
        yield gateway


async def test_https_and_wss_from_the_gateway_itself(
    https_gateway: GatewayProcess, cert: SelfSignedCert
) -> None:
    gateway = https_gateway
    assert gateway.base.startswith("https://")
    wss = gateway.base.replace("https://", "wss://")
    async with gateway.session() as http:
        async with http.get(gateway.base + "/") as page:
            assert page.status == 200
            assert "<html" in (await page.text()).lower()
        caller = HeadlessCaller()
        try:
            dialed = await caller.dial(http, gateway.base)
            assert dialed.status == 201, dialed.body
            await caller.wait_connected(20)
            await assert_answered(caller)
            assert await caller.hang_up(http, gateway.base) == 204
        finally:
            await caller.close()

        async with http.ws_connect(f"{wss}/ws/u1?is_audio=false") as ws:
            assert "You said: hello" in await seed_turn(ws)
        async with http.ws_connect(f"{wss}/ws/u1/s1?modality=text") as ws:
            await ws.send_json({"type": "text", "text": "hello"})
            texts = []
            async with asyncio.timeout(15):
                while not (event := await ws.receive_json()).get("turnComplete"):
                    parts = event.get("content", {}).get("parts", [])
                    texts += [p["text"] for p in parts if "text" in p]
            assert any("You said: hello" in text for text in texts)

    # Plain HTTP on the HTTPS port gets no answer. A TLS 1.2 client is served (TLS
    # 1.3 is what the others negotiate); the server context refuses anything older.
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(gateway.base.replace("https://", "http://") + "/healthz") as r:
                await r.read()
    tls12 = cert.client_context()
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    port = int(gateway.base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls12)
    try:
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        writer.close()
    assert server_context(cert.cert_path, cert.key_path).minimum_version is ssl.TLSVersion.TLSv1_2
    assert await gateway.get("/healthz")  # still serving
    output = gateway.output()
    assert "serving on https://127.0.0.1:" in output
    assert "Traceback" not in output


async def test_two_workers_serve_https(tmp_path: Path, cert: SelfSignedCert) -> None:
    async with serving(
        "--agent", SCRIPTED, "--session-url", "memory://", "--workers", "2",
        "--certfile", str(cert.cert_path), "--keyfile", str(cert.key_path),
        log=tmp_path / "gateway.log", tls=cert.client_context(), workers=2,
    ) as gateway, gateway.session() as http:  # fmt: skip
        pids = {w["pid"] for w in (await gateway.get("/stats"))["workers"]}
        assert len(pids) == 2
        callers = [HeadlessCaller() for _ in range(4)]
        try:
            owners = set()
            for caller in callers:
                dialed = await caller.dial(http, gateway.base)
                assert dialed.status == 201, dialed.body
            async with http.get(gateway.base + "/stats") as response:
                owners = {w["pid"] for w in (await response.json())["workers"] if w["calls"]}
            assert owners == pids  # calls on both workers
            await asyncio.gather(*(c.wait_connected(20) for c in callers))
            for caller in callers:  # each DELETE reaches the call's worker
                assert await caller.hang_up(http, gateway.base) == 204
            assert (await gateway.get("/healthz"))["calls"] == 0
        finally:
            await asyncio.gather(*(c.close() for c in callers))
    assert "serving on https://127.0.0.1:" in gateway.output()


def start_gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--port", "0", "--agent", SCRIPTED,
         "--session-url", "memory://", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
    )  # fmt: skip


def encrypted_copy(cert: SelfSignedCert, where: Path) -> Path:
    key = serialization.load_pem_private_key(cert.key_path.read_bytes(), password=None)
    where.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    return where


@pytest.mark.parametrize("workers", ["1", "2"])
def test_tls_files_that_cannot_serve_stop_start_up(
    tmp_path: Path, cert: SelfSignedCert, workers: str
) -> None:
    other = make_self_signed_cert(tmp_path / "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    missing = tmp_path / "missing.pem"
    encrypted = encrypted_copy(cert, tmp_path / "encrypted.pem")
    cases = [
        ((missing, cert.key_path), f"cannot read the TLS certificate {missing}: No such file"),
        ((cert.cert_path, missing), f"cannot read the TLS key {missing}: No such file"),
        ((cert.cert_path, other.key_path), "the key does not belong to the certificate"),
        ((garbage, cert.key_path), "not a PEM certificate chain and its PEM private key"),
        ((cert.cert_path, encrypted), f"the TLS key {encrypted} is encrypted"),
    ]
    for (certfile, keyfile), reason in cases:
        started = start_gateway(
            "--workers", workers, "--certfile", str(certfile), "--keyfile", str(keyfile)
        )
        assert started.returncode == 1, started.stderr
        lines = started.stderr.strip().splitlines()
        assert lines[-1].startswith("adk-webrtc-gateway: "), started.stderr
        assert reason in lines[-1]
        assert "Traceback" not in started.stderr

    alone = start_gateway("--workers", workers, "--certfile", str(cert.cert_path))
    assert alone.returncode == 1
    assert "certfile and keyfile go together" in alone.stderr
    # TLS is no credential: off loopback the gateway still wants authentication.
    tls_only = start_gateway(
        "--workers", workers, "--host", "0.0.0.0",
        "--certfile", str(cert.cert_path), "--keyfile", str(cert.key_path),
    )  # fmt: skip
    assert tls_only.returncode == 1
    assert "refusing to serve 0.0.0.0 without authentication" in tls_only.stderr


@contextlib.asynccontextmanager
async def tls_edge(
    cert: SelfSignedCert, **overrides: object
) -> AsyncIterator[tuple[PublicServer, int]]:
    """The gateway app (fake agent) through `PublicServer` over TLS on a loopback port."""
    settings = gateway_settings(**overrides)
    server = PublicServer(
        create_app(settings, FakeAgentConnector(echo_text=True)),
        HttpLimits.from_settings(settings, settings.max_calls),
    )
    sockets = listen("127.0.0.1", 0)
    try:
        await server.setup()
        await server.start(sockets, server_context(cert.cert_path, cert.key_path))
        yield server, sockets[0].getsockname()[1]
    finally:
        await server.cleanup()
        for sock in sockets:
            sock.close()


async def lasted(reader: asyncio.StreamReader, opened_at: float) -> tuple[float, bytes]:
    """Seconds from `opened_at` until the server closed, and what it sent."""
    received = b""
    async with asyncio.timeout(20):
        with contextlib.suppress(OSError):  # a reset, or TLS cut short
            while chunk := await reader.read(65536):
                received += chunk
    return time.monotonic() - opened_at, received


HEADER_S = 1.0
#: A cut may come this much after its limit: the server's timer runs on a shared core.
SLACK_S = 1.5


async def test_silent_tls_connections_are_cut_at_the_header_timeout(
    cert: SelfSignedCert,
) -> None:
    async with tls_edge(cert, header_timeout_s=HEADER_S, idle_timeout_s=10.0) as (server, port):
        # No ClientHello at all: the handshake's own timeout.
        opened_at = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        took, received = await lasted(reader, opened_at)
        writer.close()
        assert HEADER_S - 0.05 <= took < HEADER_S + SLACK_S, took
        assert received == b""
        # A handshake, then no request: the head timer.
        opened_at = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=cert.client_context())
        took, _ = await lasted(reader, opened_at)
        writer.close()
        assert HEADER_S - 0.05 <= took < HEADER_S + SLACK_S, took
        assert server.guard.counts.slow_heads == 1
        async with asyncio.timeout(5):
            while server.guard.open_connections:
                await asyncio.sleep(0.05)


async def test_past_the_cap_a_tls_connection_is_closed_unanswered(cert: SelfSignedCert) -> None:
    tls = aiohttp.TCPConnector(ssl=cert.client_context())
    async with (
        tls_edge(cert, max_connections=1) as (server, port),
        aiohttp.ClientSession(connector=tls) as http,
        http.ws_connect(f"wss://127.0.0.1:{port}/ws/u1?is_audio=false") as ws,
    ):
        opened_at = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        took, received = await lasted(reader, opened_at)
        writer.close()
        assert took < SLACK_S
        assert received == b""
        assert server.guard.counts.refused == 1
        await ws.send_json({"mime_type": "text/plain", "data": "still there?"})
        assert (await ws.receive_json(timeout=5))["mime_type"] == "text/plain"
