"""No secret reaches the logs, even at DEBUG.

`python -m gateway` with two workers, `--log-level DEBUG`, an admin API key, a JWT
secret and a Gemini API key (the Live API double, reached by the real google-genai
client) serves everything a session can: a WebRTC call with a bearer token, the same
conversation continued by a second call with its session id, the seed WebSocket with
the token and session id in its query, typed turns, hang-ups, `/stats` with the admin
key, and a refused attempt with a wrong token. Then the whole log (supervisor, workers,
access log, aiohttp, aiortc, ADK, google-genai, websockets) must not contain any of:
the Gemini key, the API key, the JWT secret, either token, the wrong token, or the
session id (the one secret needed to continue a conversation).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import aiohttp

from gateway.auth.credentials import mint_token
from tests.support.gateway_process import serving
from tests.support.live_api_double import LiveApiDouble, SelfSignedCert
from tests.support.peers import HeadlessCaller, tone_pcm


async def test_a_debug_log_of_a_full_session_holds_no_secret(
    double_cert: SelfSignedCert, tmp_path: Path
) -> None:
    gemini_key = "AIza" + secrets.token_urlsafe(24)
    api_key = "admin-" + secrets.token_urlsafe(24)
    jwt_secret = secrets.token_urlsafe(48)
    first_token = mint_token(jwt_secret, "alice", session_id=None, ttl_s=300)
    wrong_token = mint_token("another-secret-" + "x" * 32, "alice", session_id=None, ttl_s=300)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GATEWAY_", "GOOGLE_", "GEMINI_"))
    }
    log = tmp_path / "gateway.log"
    async with LiveApiDouble(double_cert, accepted_api_keys=frozenset({gemini_key})) as double:
        env |= {
            "GOOGLE_API_KEY": gemini_key,
            "GOOGLE_GEMINI_BASE_URL": double.base_url,
            "SSL_CERT_FILE": str(double_cert.cert_path),
            "GATEWAY_API_KEYS": api_key,
            "GATEWAY_JWT_SECRET": jwt_secret,
        }
        async with serving(
            "--workers", "2", "--log-level", "DEBUG",
            "--session-url", f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}",
            env=env, log=log, workers=2,
        ) as gateway:  # fmt: skip
            async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {first_token}"}
            ) as http:
                session_id = await voice_call(http, gateway.base, query="")
                await voice_call(http, gateway.base, query=f"?session_id={session_id}")
            second_token = mint_token(jwt_secret, "alice", session_id=session_id, ttl_s=300)
            async with aiohttp.ClientSession() as http:
                ws_url = (
                    f"{gateway.base}/ws/alice?is_audio=false"
                    f"&session_id={session_id}&token={second_token}"
                )
                async with http.ws_connect(ws_url) as ws:
                    await ws.send_json({"mime_type": "text/plain", "data": "what time is it"})
                    async with asyncio.timeout(15):
                        while "turn_complete" not in (await ws.receive_json()):
                            pass
                bad = {"Authorization": f"Bearer {wrong_token}"}
                async with http.post(f"{gateway.base}/calls", data="v=0", headers=bad) as refused:
                    assert refused.status == 401
                admin = {"Authorization": f"Bearer {api_key}"}
                async with http.get(f"{gateway.base}/stats", headers=admin) as stats:
                    assert stats.status == 200
    text = log.read_text(errors="replace")
    assert "DEBUG" in text  # the log really is at DEBUG
    assert "POST /calls" in text  # and holds the access log
    assert len(double.connections) >= 3  # every session reached the Live API
    for name, secret in {
        "Gemini API key": gemini_key,
        "API key": api_key,
        "JWT secret": jwt_secret,
        "call token": first_token,
        "session-bound token": second_token,
        "wrong token": wrong_token,
        "session id": session_id,
    }.items():
        assert secret not in text, f"the {name} is in the log"


async def voice_call(http: aiohttp.ClientSession, base: str, *, query: str) -> str:
    """A call with one spoken and one typed turn; the conversation's session id."""
    caller = HeadlessCaller()
    try:
        assert (await caller.dial(http, base, query)).status == 201
        await caller.wait_connected()
        session = await caller.wait_message(type="session", limit_s=10)
        caller.mic.play_pcm(tone_pcm(0.6))
        await caller.wait_message(type="turn_complete", limit_s=15)
        caller.send({"type": "text", "text": "and the date?"})
        await caller.wait_message(type="turn_complete", limit_s=15)
        session_id: str = session["session_id"]
        return session_id
    finally:
        assert await caller.hang_up(http, base) == 204
        await caller.close()
