"""Who a request is from, once its credential was checked. Standard library only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a request."""

    user_id: str
    """Whose conversations these are: a token's `sub`; for an API key or anonymous
    mode, the `user_id` the request names (or a default)."""
    admin: bool = False
    """An API key, or anonymous mode (no auth on loopback): may act on any call."""
    session_id: str | None = None
    """A token's `sid`: the one conversation it grants (None: any of the user's)."""
    authenticated: bool = False
    """A credential was checked (False only in anonymous mode)."""

    def may_act_on(self, owner: str) -> bool:
        """Whether this principal may touch a call (or session) owned by `owner`."""
        return self.admin or self.user_id == owner


#: Anonymous mode: loopback without credentials, or `--no-auth`. As before issue 12:
#: the request names its user, and anyone may act on any call.
def anonymous(user_id: str) -> Principal:
    return Principal(user_id=user_id, admin=True)


def principal_to_json(principal: Principal | None) -> str:
    """For a request forwarded to a sibling worker (a trusted, private socket)."""
    return json.dumps(None if principal is None else asdict(principal))


def principal_from_json(text: str | None) -> Principal | None:
    raw = json.loads(text) if text else None
    return None if raw is None else Principal(**raw)
