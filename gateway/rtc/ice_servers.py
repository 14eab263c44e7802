"""The STUN/TURN servers of a call, for the gateway's own peer connection and for the
caller (WHIP `Link: rel="ice-server"` headers, the `/offer` JSON, the browser client).

Two sources, both from settings:
- `--ice-servers`: static URLs, credentials in the URL (`turn:user:pass@host:3478`).
- `--turn-urls` with `--turn-secret`: short-lived credentials minted per call with the
  TURN REST shared-secret scheme that coturn implements as `use-auth-secret` /
  `static-auth-secret` (draft-uberti-behave-turn-rest-00 §2.2; coturn's README.turnserver,
  "TURN REST API"): username `<expiry unix time>:<user id>`, password
  `base64(HMAC-SHA1(secret, username))`. The relay recomputes the HMAC, so nothing is
  stored, and a credential stops working at its expiry.

Plain data and the standard library: the signaling edge reads it too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: Who the gateway's own TURN allocations are minted for (a user id no caller can
#: have: user ids never contain ':' in the REST username, see `_user_part`).
GATEWAY_TURN_USER = "gateway"


@dataclass(frozen=True, slots=True)
class IceServer:
    """One STUN or TURN server, as the W3C RTCIceServer dictionary describes it."""

    url: str
    username: str | None = None
    credential: str | None = None

    def to_json(self) -> dict[str, str]:
        """The RTCIceServer dictionary a browser's `RTCPeerConnection` takes."""
        server = {"urls": self.url}
        if self.username is not None and self.credential is not None:
            server["username"] = self.username
            server["credential"] = self.credential
        return server

    def link_header(self) -> str:
        """RFC 9725 §4.6: `<url>; rel="ice-server"` with, for TURN, the credentials as
        `username`, `credential` and `credential-type="password"` parameters."""
        value = f'<{self.url}>; rel="ice-server"'
        if self.username is not None and self.credential is not None:
            value += (
                f'; username="{_quoted(self.username)}"; credential="{_quoted(self.credential)}"'
                '; credential-type="password"'
            )
        return value


def parse_ice_server_url(url: str) -> IceServer:
    """`stun:host:port`, or `turn:user:password@host:port[?transport=...]`."""
    scheme, _, rest = url.partition(":")
    if "@" not in rest:
        return IceServer(url)
    creds, _, hostport = rest.rpartition("@")
    user, _, password = creds.partition(":")
    return IceServer(f"{scheme}:{hostport}", username=user, credential=password)


def turn_rest_credentials(
    secret: str, user_id: str, *, ttl_s: float, now: float
) -> tuple[str, str]:
    """(username, password) valid until `now + ttl_s` for a relay sharing `secret`."""
    username = f"{int(now + ttl_s)}:{_user_part(user_id)}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


class IceServers:
    """The servers each call gets: the static ones, and the TURN URLs with credentials
    minted for that call's user."""

    def __init__(
        self,
        static_urls: Sequence[str] = (),
        *,
        turn_urls: Sequence[str] = (),
        turn_secret: str | None = None,
        turn_ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if turn_urls and not turn_secret:
            raise ValueError("turn_urls needs turn_secret to mint credentials")
        self._static = tuple(parse_ice_server_url(url) for url in static_urls)
        self._turn_urls = tuple(turn_urls)
        self._turn_secret = turn_secret
        self._turn_ttl_s = turn_ttl_s
        self._clock = clock

    @property
    def configured(self) -> bool:
        return bool(self._static or self._turn_urls)

    def for_user(self, user_id: str) -> tuple[IceServer, ...]:
        """The servers for a call of `user_id`, TURN credentials freshly minted."""
        if not self._turn_urls or self._turn_secret is None:
            return self._static
        username, password = turn_rest_credentials(
            self._turn_secret, user_id, ttl_s=self._turn_ttl_s, now=self._clock()
        )
        minted = tuple(IceServer(url, username, password) for url in self._turn_urls)
        return self._static + minted

    def turn_addresses(self) -> tuple[str, ...]:
        """The IP addresses TURN URLs name (hostnames are left out: resolving them is
        the relay's business; a private one goes in `--ice-allowed-networks`)."""
        urls = [s.url for s in self._static if s.url.startswith("turn")]
        found = (_literal_host(url) for url in (*urls, *self._turn_urls))
        return tuple(dict.fromkeys(a for a in found if a is not None))


#: `turn:host[:port][?transport=...]`, host an IPv6 literal in brackets or not
#: (RFC 7065 section 3.1).
_TURN_HOST = re.compile(r"turns?:(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:?]+))")


def _literal_host(url: str) -> str | None:
    match = _TURN_HOST.match(url)
    if match is None:
        return None
    try:
        return str(ipaddress.ip_address(match["v6"] or match["host"]))
    except ValueError:
        return None  # a hostname


def _user_part(user_id: str) -> str:
    # The REST username is `<expiry>:<user>`; coturn reads the expiry up to the first
    # ':' only, but keep the user part free of separators for every relay.
    return user_id.replace(":", "_")


def _quoted(value: str) -> str:
    # RFC 9110 §5.6.4 quoted-string: escape backslash and double quote.
    return value.replace("\\", "\\\\").replace('"', '\\"')
