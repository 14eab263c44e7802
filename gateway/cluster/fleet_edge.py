"""Requests for calls other instances own: proxied to the owner, or redirected there.

A `PATCH` or `DELETE` of `/calls/{id}` may reach any instance behind a load
balancer. The middleware passes it to the handlers when this process holds the
call, when the registry names this instance (a sibling worker holds it: the
cluster routing takes it there) or no instance at all (404 from here); otherwise:
- `--cross-instance proxy` (default): the request goes on to the owner's public URL
  as it came (method, path and query, body, `Authorization`, `If-Match`, `Origin`,
  `Host`, every other end-to-end header), with `X-Forwarded-For` extended by the
  peer it came from and `X-Forwarded-Proto`; the owner's answer comes back as it
  is. The owner checks credentials, ownership and `If-Match` itself. It believes
  the `X-Forwarded-For` only if this instance's address is in its
  `--trusted-proxies` (docs/deploy.md section 7). A forwarded request carries
  `FORWARDED_BY_HEADER` and is never forwarded again (one hop at most).
  Bounded: `CONNECT_TIMEOUT_S` to reach the owner, `FORWARD_TIMEOUT_S` in all;
  an owner that does not answer is `503 owner_unavailable` + Retry-After.
- `--cross-instance redirect`: `307 Temporary Redirect` to the same path on the
  owner's public URL (RFC 9725 §4.5, "Load Balancing and Redirections": WHIP
  clients SHALL follow 307; the resource URL "MUST be a final one, and redirections
  are not required to be supported for the PATCH and DELETE requests"). So in this
  mode a `201` from `POST /calls` carries the absolute URL of the call on the
  instance that answered (its `Location`), and the 307 is for clients that kept
  a relative one.
When the registry does not answer, a request for a call this instance does not
hold gets `503 registry_unavailable` + Retry-After (calls held here still work).
Imports aiohttp, the calls' manager and service constants, the registry, errors and
counters.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from gateway.calls.manager import CallManager
from gateway.calls.service import HANGUP_TIMEOUT_S
from gateway.cluster.fleet_registry import FleetRegistry, RegistryDown
from gateway.errors import (
    BadRequest,
    OwnerUnavailable,
    PayloadTooLarge,
    RegistryUnavailable,
    RequestTimeout,
    UnknownCall,
)
from gateway.metrics.counters import COUNTERS

logger = logging.getLogger(__name__)

#: On a request one instance forwards to another: the forwarder's public URL.
FORWARDED_BY_HEADER = "X-Gateway-Forwarded-By"
#: Reaching the owner instance (a TCP or TLS handshake on a healthy network).
CONNECT_TIMEOUT_S = 2.0
#: The whole forwarded request: the owner's bound on hanging up, plus slack.
FORWARD_TIMEOUT_S = HANGUP_TIMEOUT_S + 3.0
#: RFC 9110 §7.6.1 and the ones proxies treat the same way: never forwarded.
HOP_BY_HOP = frozenset(
    name.lower()
    for name in (
        hdrs.CONNECTION,
        hdrs.KEEP_ALIVE,
        hdrs.PROXY_AUTHENTICATE,
        hdrs.PROXY_AUTHORIZATION,
        hdrs.TE,
        hdrs.TRAILER,
        hdrs.TRANSFER_ENCODING,
        hdrs.UPGRADE,
        hdrs.CONTENT_LENGTH,
    )
)
#: Set on the relayed answer by this process's own server.
_NOT_RELAYED = HOP_BY_HOP | {hdrs.DATE.lower(), hdrs.SERVER.lower()}


class CrossInstance:
    """The middleware and the HTTP client it forwards with (one per process)."""

    def __init__(
        self,
        registry: FleetRegistry,
        local: CallManager,
        *,
        mode: str,
        max_body_bytes: int,
        body_timeout_s: float,
    ) -> None:
        self._registry = registry
        self._local = local
        self._redirect = mode == "redirect"
        self._max_body_bytes = max_body_bytes
        self._body_timeout_s = body_timeout_s
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        call_id = _call_in(request)
        if call_id is None:
            return await self._answered_here(request, handler)
        if FORWARDED_BY_HEADER in request.headers or call_id in self._local.call_ids():
            return await handler(request)
        try:
            owner = await self._registry.owner(call_id)
        except RegistryDown:
            return await self._here_or_refused(request, handler)
        if owner is None or owner == self._registry.url:
            return await handler(request)
        if self._redirect:
            COUNTERS.add("cross_instance_redirected")
            return web.Response(status=307, headers={hdrs.LOCATION: owner + str(request.rel_url)})
        return await self._proxy(request, owner)

    async def _answered_here(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Any other request; in redirect mode a new call's `Location` is absolute:
        the URL of the call on this instance (final, as RFC 9725 §4.5 wants)."""
        response = await handler(request)
        location = response.headers.get(hdrs.LOCATION, "")
        if self._redirect and response.status == 201 and location.startswith("/calls/"):
            response.headers[hdrs.LOCATION] = self._registry.url + location
        return response

    async def _here_or_refused(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The registry is down: the call may still be on this instance (another
        worker); if not, nobody here can say where it is."""
        try:
            return await handler(request)
        except UnknownCall:
            COUNTERS.add("registry_unavailable_refused")
            raise RegistryUnavailable(
                "this call is not on the instance that received the request, and the "
                "registry that says where it is cannot be reached; try again shortly"
            ) from None

    async def _proxy(self, request: web.Request, owner: str) -> web.Response:
        body = await self._body(request)
        try:
            async with self._client().request(
                request.method,
                owner + str(request.rel_url),
                data=body or None,
                headers=self._forwarded_headers(request),
                allow_redirects=False,
            ) as answer:
                payload = await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            COUNTERS.add("owner_unavailable")
            logger.warning("the instance owning a call did not answer: %s", type(exc).__name__)
            raise OwnerUnavailable(
                "the instance that holds this call did not answer; try again shortly"
            ) from None
        COUNTERS.add("cross_instance_proxied")
        headers = CIMultiDict(
            (name, value)
            for name, value in answer.headers.items()
            if name.lower() not in _NOT_RELAYED
        )
        return web.Response(status=answer.status, body=payload or None, headers=headers)

    def _forwarded_headers(self, request: web.Request) -> CIMultiDict[str]:
        """The request's end-to-end headers (its `Host` too), the peer it came from
        appended to `X-Forwarded-For`, and the hop's scheme when no proxy said one."""
        headers = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in HOP_BY_HOP and name.lower() != "x-forwarded-for"
        )
        chain = [v for v in request.headers.getall(hdrs.X_FORWARDED_FOR, ()) if v.strip()]
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if isinstance(peer, tuple) and peer:
            chain.append(str(peer[0]))
        if chain:
            headers[hdrs.X_FORWARDED_FOR] = ", ".join(chain)
        headers.setdefault(hdrs.X_FORWARDED_PROTO, request.scheme)
        headers[FORWARDED_BY_HEADER] = self._registry.url
        return headers

    async def _body(self, request: web.Request) -> bytes:
        """The body, bounded as the handlers bound it (size and time)."""
        limit = self._max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
        body = bytearray()
        try:
            async with asyncio.timeout(self._body_timeout_s):
                while chunk := await request.content.read(limit + 1 - len(body)):
                    body += chunk
                    if len(body) > limit:
                        raise PayloadTooLarge(f"body larger than {limit} bytes")
        except TimeoutError:
            raise RequestTimeout("the body did not arrive in time") from None
        except ConnectionError:
            raise BadRequest("the connection closed before the body arrived") from None
        return bytes(body)

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                auto_decompress=False,  # the body goes back as the owner sent it
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            )
        return self._http


def _call_in(request: web.Request) -> str | None:
    """The call a `PATCH` or `DELETE` of `/calls/{id}` is for (None: another request)."""
    if request.method not in (hdrs.METH_PATCH, hdrs.METH_DELETE):
        return None
    if request.match_info.http_exception is not None:
        return None
    return request.match_info.get("call_id")
