"""What went wrong upstream (the Gemini Live API), and whether retrying can help.

The Live API reports most failures as websocket close codes, which google-genai
raises as `errors.APIError(code, reason)`; network failures surface as `OSError`,
`TimeoutError` or a websockets handshake error. `classify` turns any of these into
an `UpstreamFailure` with a cause that is safe to show a caller (no key, no URL).
An ADK-facing helper: imports google.genai and websockets, nothing from the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import websockets
from google.genai import errors as genai_errors

from gateway.adk.live_models import known_models_text

Cause = Literal["invalid_credentials", "unknown_model", "rejected", "transient", "unreachable"]

#: Close codes after which a reconnect (with the newest resumption handle) is worth it:
#: normal close, going away, abnormal drop, internal error, restart, try later, bad gateway.
TRANSIENT_CLOSE_CODES = frozenset({1000, 1001, 1006, 1011, 1012, 1013, 1014})

_MESSAGES: dict[Cause, str] = {
    "invalid_credentials": "the Gemini API rejected the gateway's credentials (invalid API key)",
    "unknown_model": "the configured Gemini live model does not exist or does not support live",
    "rejected": "the Gemini Live API rejected the session configuration",
    "transient": "the Gemini Live API connection dropped",
    "unreachable": "the Gemini Live API could not be reached",
}


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    """A classified upstream failure. `retryable`: a reconnect may succeed."""

    cause: Cause
    code: int | None = None

    @property
    def retryable(self) -> bool:
        return self.cause in ("transient", "unreachable")

    @property
    def message(self) -> str:
        suffix = f" (close code {self.code})" if self.code is not None else ""
        return _MESSAGES[self.cause] + suffix


def classify(exc: BaseException) -> UpstreamFailure | None:
    """The failure `exc` stands for, or None when it is not an upstream failure."""
    if isinstance(exc, genai_errors.APIError):
        return _classify_api_error(exc.code, str(exc))
    if isinstance(exc, websockets.ConnectionClosed):
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        return _classify_api_error(code, str(exc))
    if isinstance(exc, websockets.InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return UpstreamFailure("invalid_credentials", status)
        return UpstreamFailure("unreachable", status)
    if isinstance(exc, OSError | TimeoutError | websockets.InvalidHandshake):  # incl. TLS
        return UpstreamFailure("unreachable")
    if _is_missing_credentials(exc) or (
        isinstance(exc, ValueError) and "api key" in str(exc).lower()
    ):
        return UpstreamFailure("invalid_credentials")  # e.g. "No API key was provided"
    return None


def _classify_api_error(code: int, text: str) -> UpstreamFailure:
    lowered = text.lower()
    if code in TRANSIENT_CLOSE_CODES or 500 <= code < 600:
        return UpstreamFailure("transient", code)
    if "api key" in lowered or "credential" in lowered or code in (401, 403):
        return UpstreamFailure("invalid_credentials", code)
    if code == 1008 and ("not found" in lowered or "not supported" in lowered):
        return UpstreamFailure("unknown_model", code)
    if code == 404:
        return UpstreamFailure("unknown_model", code)
    return UpstreamFailure("rejected", code)


def _is_missing_credentials(exc: BaseException) -> bool:
    """google-auth's DefaultCredentialsError, without importing google.auth here."""
    return type(exc).__name__ in {"DefaultCredentialsError", "RefreshError"}


def refusal_message(failure: UpstreamFailure, model: str) -> str:
    """What a caller (and the operator) is told when the Live API will not serve
    `model`: a model it does not serve is named, with the ones this gateway knows."""
    if failure.cause == "unknown_model":
        return (
            f"the Gemini Live API does not serve model {model} (close code {failure.code}); "
            f"live models this gateway knows: {known_models_text()}"
        )
    if failure.cause == "rejected":
        return f"{failure.message}, for model {model}"
    return failure.message
