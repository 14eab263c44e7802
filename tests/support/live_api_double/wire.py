"""Wire-format facts of the Live API double: endpoint paths, closes, keys, base64, logs.

Imports only the standard library and websockets.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

API_VERSIONS = ("v1alpha", "v1beta")
PATHS = {
    f"/ws/google.ai.generativelanguage.{v}.GenerativeService.BidiGenerateContent": v
    for v in API_VERSIONS
}
BAD_KEY_CLOSE = (1007, "API key not valid. Please pass a valid API key.")
#: A setup field the model does not accept (python-genai #865: "even if you're setting
#: the field to False"; adk-python #5075 for 3.1).
INVALID_ARGUMENT_CLOSE = (1007, "Request contains an invalid argument.")
#: Caller media in the pre-3.x `mediaChunks` form, mid-session (adk-python #5075).
MEDIA_CHUNKS_CLOSE = (
    1007,
    "realtime_input.media_chunks is deprecated. Use audio, video, or text instead.",
)
_MAX_CLOSE_REASON_BYTES = 123


def unknown_model_close(model: str, api_version: str) -> tuple[int, str]:
    """The close the real service sends for a model it does not serve live."""
    reason = (
        f"{model} is not found for API version {api_version}, or is not supported for "
        "bidiGenerateContent. Call ListModels to see the list of available models and "
        "their supported methods."
    )
    return 1008, reason.encode()[:_MAX_CLOSE_REASON_BYTES].decode(errors="ignore")


def snake(name: str) -> str:
    """`thinkingLevel` -> `thinking_level`."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def has(message: Mapping[str, Any], name: str) -> bool:
    """Whether `message` carries `name` in either spelling."""
    return name in message or snake(name) in message


def field(message: Mapping[str, Any], name: str) -> Any:
    """`name` (camelCase) or its snake_case spelling, else None.

    google-genai 2.34 mixes both on the wire: `realtime_input`, `client_content`,
    `tool_response` and `mime_type`, but `thinkingConfig` holding `thinking_level` and
    `proactivity` holding `proactive_audio` (captured from the client, see the tests).
    """
    value = message.get(name)
    return message.get(snake(name)) if value is None else value


def check_path(_conn: ServerConnection, request: Request) -> Response | None:
    if request.path.split("?")[0] in PATHS:
        return None
    body = b'{"error": {"code": 404, "status": "NOT_FOUND"}}'
    headers = Headers([("Content-Type", "application/json")])
    return Response(404, "Not Found", headers, body)


def b64decode(data: str) -> bytes:
    """The client sends URL-safe base64; accept the standard alphabet too."""
    data = data.replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def strip_audio(message: dict[str, Any]) -> dict[str, Any]:
    """A copy of a frame with base64 payloads replaced by their decoded length."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: walk(v) for k, v in value.items()}
            if isinstance(value.get("data"), str) and ("mimeType" in value or "mime_type" in value):
                out["data"] = len(b64decode(value["data"]))
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    result: dict[str, Any] = walk(message)
    return result
