"""Cross-origin calls from the allowed origins (`--allowed-origins`), by aiohttp-cors.

A page served by the gateway itself is same-origin and needs none of this. An app
whose page lives elsewhere (https://app.example calling https://gateway.example)
makes CORS requests: the browser sends a preflight `OPTIONS` (our requests carry
`Authorization` and `Content-Type: application/sdp`), and reads `Location`,
`X-Session-Id`, `ETag`, `Link` and `Retry-After` from the answer only if they are
exposed. WHIP (RFC 9725 §4.2) expects its endpoints to answer CORS the same way;
`signaling.options_middleware` adds `Accept-Post`/`Accept-Patch` to the preflights
answered here and answers plain `OPTIONS` itself. Origins not on the
list get no CORS headers, so the browser hides any answer from their page, and the
handlers refuse them anyway (`EdgeAuth.check_origin`: 403).
No cookies are involved (the credential is a bearer header), so credentials are not
allowed cross-origin.
"""

from __future__ import annotations

from collections.abc import Iterable

import aiohttp_cors
from aiohttp import web

#: The call-signaling resources a page on another origin may use.
CROSS_ORIGIN_PATHS = frozenset({"/calls", "/calls/{call_id}", "/offer", "/ice-servers"})
ALLOWED_HEADERS = ("Authorization", "Content-Type", "If-Match")
#: What a page may read of our answers: the 201's `Location`, `X-Session-Id`, `ETag`
#: and `Link`s (RFC 9725 §4.2, §4.6, §4.9), a refusal's `Retry-After`, and a 415's
#: `Accept-Post`/`Accept-Patch`. (A preflight's own headers are the browser's alone.)
EXPOSED_HEADERS = (
    "Location",
    "X-Session-Id",
    "ETag",
    "Retry-After",
    "Link",
    "Accept-Post",
    "Accept-Patch",
)
PREFLIGHT_CACHE_S = 600


def allow_cross_origin(app: web.Application, origins: Iterable[str]) -> None:
    """Answer CORS (preflights included) for `origins` on the signaling routes; call
    after the routes are added."""
    allowed = sorted(set(origins))
    if not allowed:
        return
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False,
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        max_age=PREFLIGHT_CACHE_S,
    )
    cors = aiohttp_cors.setup(app, defaults=dict.fromkeys(allowed, options))
    for route in list(app.router.routes()):
        if route.resource is not None and route.resource.canonical in CROSS_ORIGIN_PATHS:
            cors.add(route)
