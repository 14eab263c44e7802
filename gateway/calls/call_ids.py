"""Call ids: unguessable, opaque to the caller, and naming the worker that owns the call
(so any worker can route a request for it). Standard library only."""

from __future__ import annotations

import base64
import binascii
import re
import secrets

#: Random bytes in a call id (unguessable), after the owning worker's index.
CALL_ID_RANDOM_BYTES = 16
_WORKER_INDEX_BYTES = 2
_CALL_ID = re.compile(r"^[A-Za-z0-9_-]{24}$")  # base64url of 2 + 16 bytes, no padding


def new_call_id(worker: int = 0) -> str:
    """The owning worker's index and 128 random bits, URL-safe: unguessable, and
    opaque to the caller (24 characters)."""
    raw = worker.to_bytes(_WORKER_INDEX_BYTES, "big") + secrets.token_bytes(CALL_ID_RANDOM_BYTES)
    return base64.urlsafe_b64encode(raw).decode("ascii")


def call_owner(call_id: str) -> int | None:
    """The index of the worker that made `call_id`; None if it is not a call id."""
    if not _CALL_ID.match(call_id):
        return None
    try:
        raw = base64.urlsafe_b64decode(call_id)
    except (binascii.Error, ValueError):
        return None
    return int.from_bytes(raw[:_WORKER_INDEX_BYTES], "big")
