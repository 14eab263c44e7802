"""Wire-format facts of the Live API double: endpoint paths, refusals, base64, logs.

Imports only the standard library and websockets.
"""

from __future__ import annotations

import base64
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
DEFAULT_MODELS = frozenset(
    {
        "gemini-live-2.5-flash-preview",
        "gemini-2.5-flash-native-audio-preview-09-2025",
        "gemini-2.0-flash-live-001",
    }
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
