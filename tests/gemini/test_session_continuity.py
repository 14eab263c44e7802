"""A conversation outlives its gateway process (SQLite file and real PostgreSQL).

Two `python -m gateway` processes in turn, sharing a session store and the Live API
double: the first takes a call in which the caller types a turn, then hangs up and
exits; the second takes a call with the same `session_id`.

Pins down, for each store:
- with resumption on (default), the second call's Live connection resumes with the
  newest handle of the first call, so the model has the first call's turns;
- with resumption off, ADK replays the stored history to the new connection: the
  model receives the first call's typed turn as initial history;
- the second call works (its text turn is answered).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.gemini.conftest import GOOD_KEY, LIVE_MODEL
from tests.support.gateway_process import serving
from tests.support.live_api_double import LiveApiDouble
from tests.support.peers import HeadlessCaller

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgresql"])
async def session_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/store/sessions.db"
        return
    name = f"gw_continuity_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def gateway_process(
    double: LiveApiDouble, session_url: str, log: Path, **env: str
) -> AsyncIterator[aiohttp.ClientSession]:
    """`python -m gateway` on a free port, pointed at the double; its HTTP client."""
    environ = {
        **os.environ,
        "GATEWAY_SESSION_URL": session_url,
        "GATEWAY_GEMINI_MODEL": LIVE_MODEL,
        "GOOGLE_API_KEY": GOOD_KEY,
        "GOOGLE_GEMINI_BASE_URL": double.base_url,
        "SSL_CERT_FILE": str(double.cert.cert_path),
        **env,
    }
    async with (
        serving(env=environ, log=log) as gateway,
        aiohttp.ClientSession(gateway.base) as http,
    ):
        yield http


async def text_call(http: aiohttp.ClientSession, text: str, session_id: str | None) -> str:
    """One call: say `text` on the data channel, wait for the answer, hang up."""
    caller = HeadlessCaller()
    query = f"?session_id={session_id}" if session_id else ""
    try:
        async with http.post(
            f"/calls{query}", data=await caller.offer(), headers={"Content-Type": "application/sdp"}
        ) as response:
            assert response.status == 201, await response.text()
            answer, location = await response.text(), response.headers["Location"]
            session = response.headers["X-Session-Id"]
        await caller.accept(answer)
        await caller.wait_connected()
        await caller.wait_channel_open()
        caller.send({"type": "text", "text": text})
        await caller.wait_message(type="turn_complete", limit_s=15)
        async with http.delete(location) as response:
            assert response.status == 204
    finally:
        await caller.close()
    return session


@pytest.mark.parametrize("resumption", [True, False], ids=["handle", "history"])
async def test_second_process_continues_the_conversation(
    gemini_env: LiveApiDouble, session_url: str, tmp_path: Path, resumption: bool
) -> None:
    double = gemini_env
    env = {"GATEWAY_GEMINI_SESSION_RESUMPTION": str(resumption).lower()}
    log = tmp_path / "gateway.log"
    async with gateway_process(double, session_url, log, **env) as http:
        session_id = await text_call(http, "my name is Ada", None)
    first = double.connections[-1]
    assert ("user", "my name is Ada") in first.history
    count = len(double.connections)

    async with gateway_process(double, session_url, log, **env) as http:
        assert await text_call(http, "what is my name", session_id) == session_id
    second = double.connections[-1]
    assert len(double.connections) == count + 2, log.read_text()  # check + the call
    if resumption:
        assert second.resumed_handle == first.handles_issued[-1]
        assert second.history[:2] == [("user", "my name is Ada"), ("model", "reply 1")]
    else:
        assert second.resumed_handle is None
        replayed = [p.get("text") for t in second.history_received for p in t.get("parts", [])]
        assert "my name is Ada" in replayed
    assert ("user", "what is my name") in second.history
