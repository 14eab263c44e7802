"""What every answer of the HTTP edge to hostile input must be, and its content types.

2xx, or a 4xx with a JSON error body; never a 5xx. A call an answer started is hung
up at once, so the next input meets the same gateway. Imports aiohttp's test client.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient

SDP = {"Content-Type": "application/sdp"}
SDPFRAG = {"Content-Type": "application/trickle-ice-sdpfrag"}
JSON = {"Content-Type": "application/json"}


async def answered_or_refused(
    client: TestClient[Any, Any], path: str, data: bytes | str, headers: dict[str, str]
) -> int:
    """POST `data` to `path`; assert the answer is a clean one; hang up a call it
    started. Returns the status."""
    async with client.post(path, data=data, headers=headers) as response:
        body = await response.read()
        status, location = response.status, response.headers.get("Location")
    assert status < 500, body[:200]
    if status >= 400:
        assert "error" in json.loads(body)
        return status
    if location is None:  # `/offer` names the call in its JSON answer
        location = f"/calls/{json.loads(body)['call_id']}"
    async with client.delete(location) as hung_up:
        assert hung_up.status == 204
    return status
