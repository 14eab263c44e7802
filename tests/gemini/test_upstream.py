"""Classifying upstream failures (pure): which are retried, which end the call, and
what the caller is told.

Pins down the close codes of the real service (1007 bad key, 1008 unknown model,
1000/1006/1011 transient), network errors as unreachable, missing credentials, and
that messages carry no key, URL or reason text from upstream.
"""

from __future__ import annotations

import pytest
import websockets
from google.genai import errors
from websockets.frames import Close

from gateway.adk.upstream import UpstreamFailure, classify

BAD_KEY = "API key not valid. Please pass a valid API key."
NO_MODEL = "models/x is not found for API version v1alpha, or is not supported for bidi..."
CREDS = "invalid_credentials"


@pytest.mark.parametrize(
    ("exc", "cause", "retryable"),
    [
        (errors.APIError(1007, BAD_KEY), CREDS, False),
        (errors.APIError(1008, "API keys are not supported by this API."), CREDS, False),
        (errors.APIError(1008, NO_MODEL), "unknown_model", False),
        (errors.APIError(1007, "Request contains an invalid argument."), "rejected", False),
        (errors.APIError(1000, "bye"), "transient", True),
        (errors.APIError(1006, "abnormal closure"), "transient", True),
        (errors.APIError(1011, "The service is currently unavailable."), "transient", True),
        (websockets.ConnectionClosedError(None, None), "transient", True),
        (websockets.ConnectionClosedError(Close(1011, "x"), None), "transient", True),
        (ConnectionRefusedError(111, "refused"), "unreachable", True),
        (TimeoutError("timed out during opening handshake"), "unreachable", True),
        (ValueError("No API key was provided. Please pass a valid API key."), CREDS, False),
    ],
)  # fmt: skip
def test_classification(exc: BaseException, cause: str, retryable: bool) -> None:
    failure = classify(exc)
    assert failure is not None
    assert failure.cause == cause
    assert failure.retryable is retryable


def test_other_exceptions_are_not_upstream_failures() -> None:
    assert classify(KeyError("x")) is None
    assert classify(ValueError("something else")) is None


def test_messages_are_safe_to_show() -> None:
    failure = classify(errors.APIError(1007, "API key not valid. key=AIzaSecret"))
    assert failure == UpstreamFailure("invalid_credentials", 1007)
    assert "AIza" not in failure.message
    assert failure.message.endswith("(close code 1007)")
