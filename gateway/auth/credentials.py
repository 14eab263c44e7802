"""Checking a bearer credential: a static API key, or a signed, short-lived call token.

API keys are for server-side callers (and are admin keys). Call tokens are JWTs an
application's backend mints for its browser or mobile users (RFC 7519, verified
with PyJWT): `sub` is the user id, `exp` is required, `sid` optionally binds the
token to one conversation. Tokens are HS256 with the configured secret, or signed
with a private key whose public key the gateway has (RS*, PS*, ES*, EdDSA); the
algorithm list is fixed by which of the two is configured, so a token can never
choose HS256 against a public key (the classic JWT algorithm confusion). Messages
never contain the credential. Imports PyJWT and the gateway's ids and errors.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from gateway.auth.principal import Principal
from gateway.errors import Forbidden, Unauthorized
from gateway.wire.data_channel import is_valid_id

#: Clock skew tolerated on `exp`/`nbf`/`iat` (RFC 7519 §4.1.4 "a small leeway").
LEEWAY_S = 30
SECRET_ALGORITHMS = ["HS256"]
PUBLIC_KEY_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
#: A user id for requests made with an API key that name none.
API_KEY_USER = "api"


@dataclass(frozen=True)
class Authenticator:
    """What the gateway accepts: any of `api_keys`, and tokens verified with `key`."""

    api_keys: tuple[str, ...] = ()
    key: str | bytes | None = None
    algorithms: tuple[str, ...] = ()

    @classmethod
    def from_settings(
        cls,
        *,
        api_keys: tuple[str, ...],
        jwt_secret: str | None,
        jwt_public_key: Path | None,
    ) -> Authenticator | None:
        """None when nothing is configured (anonymous mode)."""
        if jwt_public_key is not None:
            pem = jwt_public_key.read_bytes()
            return cls(api_keys, pem, tuple(PUBLIC_KEY_ALGORITHMS))
        if jwt_secret is not None:
            return cls(api_keys, jwt_secret, tuple(SECRET_ALGORITHMS))
        if api_keys:
            return cls(api_keys)
        return None

    def authenticate(self, credential: str | None, *, user_id: str | None = None) -> Principal:
        """The principal `credential` stands for; `Unauthorized` if it is missing or
        not valid, `Forbidden` if it is a token for another user than `user_id`
        (the user a request names; ignored for API keys, which act for anyone)."""
        if not credential:
            raise Unauthorized("a bearer credential is required")
        if self._is_api_key(credential):
            return Principal(user_id=user_id or API_KEY_USER, admin=True, authenticated=True)
        claims = self._verify(credential)
        subject, session = claims.get("sub"), claims.get("sid")
        if not isinstance(subject, str) or not is_valid_id(subject):
            raise Unauthorized("the token's sub is not a valid user id")
        if session is not None and (not isinstance(session, str) or not is_valid_id(session)):
            raise Unauthorized("the token's sid is not a valid session id")
        if user_id is not None and user_id != subject:
            raise Forbidden("the token is for another user")
        return Principal(user_id=subject, session_id=session, authenticated=True)

    def _is_api_key(self, credential: str) -> bool:
        given = credential.encode()
        # compare_digest on every key: no early exit that times which key matched.
        matches = [hmac.compare_digest(given, key.encode()) for key in self.api_keys]
        return any(matches)

    def _verify(self, token: str) -> dict[str, Any]:
        if self.key is None:
            raise Unauthorized("the credential is not a valid API key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key,
                algorithms=list(self.algorithms),
                options={"require": ["exp", "sub"]},
                leeway=LEEWAY_S,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("the credential is not a valid token or API key") from None
        return claims


def mint_token(secret: str, user_id: str, *, session_id: str | None, ttl_s: float) -> str:
    """A call token for `user_id` (and `session_id`), valid for `ttl_s`, signed HS256."""
    if not is_valid_id(user_id) or (session_id is not None and not is_valid_id(session_id)):
        raise ValueError("user and session ids must match [A-Za-z0-9_.:-]{1,128}")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + int(ttl_s)}
    if session_id is not None:
        claims["sid"] = session_id
    return jwt.encode(claims, secret, algorithm=SECRET_ALGORITHMS[0])
