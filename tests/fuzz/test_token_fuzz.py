"""Fuzzing the credential parser: bearer values, JWT headers and claims of any shape.

Pins down: `Authenticator.authenticate` returns a principal or raises `Unauthorized`
(401) / `Forbidden` (403) for any credential; a token is accepted only when it is
signed with the configured secret, by an allowed algorithm, with a string `sub` that
is a valid id and a future `exp`; and the HTTP edge answers any `Authorization`
header with 401, 403 or 429, never a 5xx.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.auth.credentials import Authenticator
from gateway.errors import Forbidden, Unauthorized
from gateway.wire.data_channel import is_valid_id
from tests.fuzz.mutations import json_values
from tests.support.fakes import FakeAgentConnector

SECRET = "fuzz-secret-0123456789abcdef0123456789"
API_KEY = "fuzz-api-key-0123456789"
AUTHENTICATOR = Authenticator((API_KEY,), SECRET, ("HS256",))
CHEAP = settings(max_examples=10 * settings().max_examples)
_VALUES = json_values(max_leaves=8)
_NOW = int(time.time())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_PRINTABLE = st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f")
CLAIMS = st.fixed_dictionaries(
    {},
    optional={
        "sub": st.sampled_from(["alice", "", "a" * 200, "bad id!", "b.c:d-e_f"]) | _VALUES,
        "exp": st.sampled_from([_NOW + 600, _NOW - 600, 0, 2**63, -1]) | _VALUES,
        "sid": st.sampled_from(["s1", "", "x" * 300]) | _VALUES,
        "nbf": st.sampled_from([_NOW - 5, _NOW + 600]) | _VALUES,
        "iat": _VALUES,
    },
)
HEADERS = st.fixed_dictionaries(
    {"alg": st.sampled_from(["HS256", "HS512", "none", "RS256", "ES256", ""]) | _VALUES},
    optional={"typ": st.sampled_from(["JWT", "at+jwt"]) | _VALUES, "kid": _VALUES},
)


@st.composite
def tokens(draw: st.DrawFn) -> str:
    """JWT-shaped strings: any header and claims, signed right, wrong, or not at all."""
    header = _b64(json.dumps(draw(HEADERS)).encode())
    payload = _b64(json.dumps(draw(CLAIMS)).encode())
    signing_input = f"{header}.{payload}"
    how = draw(st.sampled_from(["right", "wrong", "none", "garbage"]))
    if how == "right":  # HS256 with the secret, whatever the header claims
        digest = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
        signature = _b64(digest)
    elif how == "wrong":
        signature = _b64(b"\x00" * 32)
    elif how == "none":
        signature = ""
    else:
        signature = draw(st.text(_PRINTABLE, max_size=60))
    return f"{signing_input}.{signature}"


CREDENTIALS = tokens() | st.text(max_size=400) | st.sampled_from(["", API_KEY, API_KEY + " "])


def _accepted_claims(token: str) -> dict[str, Any] | None:
    """What a correct verifier makes of `token`: its claims if it must be accepted."""
    try:
        return jwt.decode(
            token, SECRET, algorithms=["HS256"], options={"require": ["exp", "sub"]}, leeway=30
        )
    except jwt.InvalidTokenError:
        return None


@CHEAP
@given(credential=CREDENTIALS, named=st.sampled_from([None, "alice", "bob"]))
def test_any_credential_is_a_principal_or_a_4xx(credential: str, named: str | None) -> None:
    try:
        principal = AUTHENTICATOR.authenticate(credential, user_id=named)
    except (Unauthorized, Forbidden):
        return
    if principal.admin:
        assert credential == API_KEY
        return
    claims = _accepted_claims(credential)
    assert claims is not None, "a token no correct verifier accepts was accepted"
    assert isinstance(claims["sub"], str)
    assert is_valid_id(claims["sub"])
    assert principal.user_id == claims["sub"]
    assert named in (None, claims["sub"])


@pytest.fixture
async def client(start_gateway: Callable[..., Any]) -> TestClient[Any, Any]:
    gateway: TestClient[Any, Any] = await start_gateway(
        FakeAgentConnector(), jwt_secret=SECRET, api_keys=API_KEY, auth_failures_per_minute=10_000
    )
    return gateway


#: What a client library lets through as a header value (no control characters).
_HEADER_TEXT = st.text(_PRINTABLE, max_size=300)


@given(header=_HEADER_TEXT | tokens().map(lambda t: "Bearer " + t))
async def test_any_authorization_header_gets_a_4xx(
    header: str, client: TestClient[Any, Any]
) -> None:
    headers = {"Authorization": header, "Content-Type": "application/sdp"}
    async with client.post("/calls", data="v=0", headers=headers) as response:
        # 400: a valid credential whose junk offer is then refused.
        assert response.status in (400, 401, 403, 429), response.status
        assert "error" in await response.json()
