"""The edges' side of authentication (aiohttp): who a request is from, whether its
origin may call, whether it may have what it asks for.

Credentials travel as `Authorization: Bearer <token or API key>` (RFC 6750 §2.1). A
browser cannot set headers on a WebSocket, so `/ws/...` also takes the credential as
the subprotocol `bearer.<credential>` (offered with `Sec-WebSocket-Protocol`; the
gateway answers with the plain `bearer` protocol, never echoing the secret) or as
the `token` query parameter (for clients like the seed sample's, which can set
neither; the access log leaves query strings out). Failed attempts count against the
source address (`UsageLimits`). In anonymous mode (no credentials configured, on
loopback) every request is the anonymous principal of the user it names, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from gateway.auth.credentials import Authenticator
from gateway.auth.principal import Principal, anonymous
from gateway.auth.rate_limits import UsageLimits
from gateway.errors import Forbidden, Unauthorized

#: The WebSocket subprotocol carrying a credential: `bearer.<credential>`.
WS_BEARER_PROTOCOL = "bearer"
DEFAULT_USER_ID = "anonymous"


@dataclass(frozen=True)
class EdgeAuth:
    """How one app checks requests: the authenticator (None: anonymous mode), the
    usage limits (None: not enforced, anonymous loopback) and the allowed origins."""

    authenticator: Authenticator | None
    limits: UsageLimits | None
    allowed_origins: frozenset[str]

    async def principal(
        self, request: web.Request, *, user_id: str | None, websocket: bool = False
    ) -> Principal:
        """Who `request` is from; `user_id` is the user it names (query or path)."""
        if self.authenticator is None:
            return anonymous(user_id or DEFAULT_USER_ID)
        source = request.remote or "unknown"
        if self.limits is not None:
            await self.limits.check_auth_allowed(source)
        try:
            return self.authenticator.authenticate(
                credential_of(request, websocket=websocket), user_id=user_id
            )
        except Unauthorized:
            if self.limits is not None:
                await self.limits.auth_failed(source)
            raise

    async def admin(self, request: web.Request) -> None:
        """`Forbidden` unless the request carries an admin (API) key."""
        principal = await self.principal(request, user_id=None)
        if not principal.admin:
            raise Forbidden("an admin key is required")

    def check_origin(self, request: web.Request) -> None:
        """A browser request (it has an `Origin`) must come from the gateway's own
        origin or an allowed one; requests without `Origin` are not from a browser
        page and pass (their credential is what counts)."""
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or origin in self.allowed_origins:
            return
        if urlsplit(origin).netloc == request.host:  # the page the gateway served
            return
        raise Forbidden("this origin may not call the gateway (--allowed-origins)")


def credential_of(request: web.Request, *, websocket: bool = False) -> str | None:
    """The bearer credential a request carries, if any."""
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if not websocket:
        return None
    for protocol in _offered_protocols(request):
        kind, dot, value = protocol.partition(".")
        if kind == WS_BEARER_PROTOCOL and dot and value:
            return value
    return request.query.get("token") or None


def websocket_protocols(request: web.Request) -> tuple[str, ...]:
    """The subprotocol the gateway selects: browsers fail a handshake whose answer is
    not one of the offered protocols, so a client sending its credential offers
    `["bearer", "bearer.<credential>"]` and the gateway answers the plain `bearer`."""
    offered = _offered_protocols(request)
    return (WS_BEARER_PROTOCOL,) if WS_BEARER_PROTOCOL in offered else ()


def _offered_protocols(request: web.Request) -> list[str]:
    header = request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "")
    return [p.strip() for p in header.split(",") if p.strip()]


def granted_session(principal: Principal, requested: str | None) -> str | None:
    """The conversation a request may continue: a token bound to one (`sid`) grants
    only that one (asking for another is `Forbidden`)."""
    if principal.session_id is None:
        return requested
    if requested is not None and requested != principal.session_id:
        raise Forbidden("the token grants another conversation")
    return principal.session_id


EDGE_AUTH_KEY = web.AppKey("edge_auth", EdgeAuth)
