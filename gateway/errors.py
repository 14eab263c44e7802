"""The gateway's errors, each with a stable wire code and an HTTP status.

Raised anywhere below the edge; `signaling.py` turns them into HTTP responses and
`call.py` into data-channel `error` events, in one place each. Messages are safe to
show to a client: they never carry SDP, transcripts, tokens or user ids.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class: `code` goes on the wire, `http_status` at the HTTP edge."""

    code = "internal"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(GatewayError):
    code = "bad_request"
    http_status = 400


class InvalidSdp(BadRequest):
    code = "invalid_sdp"


class NoAudioInOffer(BadRequest):
    code = "no_audio"


class InvalidMessage(BadRequest):
    """A data-channel or JSON message we cannot use."""

    code = "invalid_message"


class UnsupportedMediaType(GatewayError):
    code = "unsupported_media_type"
    http_status = 415


class PayloadTooLarge(GatewayError):
    code = "payload_too_large"
    http_status = 413


class NotFound(GatewayError):
    code = "not_found"
    http_status = 404


class UnknownCall(NotFound):
    code = "unknown_call"


class UnknownSession(NotFound):
    code = "unknown_session"


class AtCapacity(GatewayError):
    """Too many live calls; the client should retry after `retry_after_s`."""

    code = "at_capacity"
    http_status = 503

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AgentUnavailable(GatewayError):
    """The agent could not start (bad credentials, unknown model, unreachable)."""

    code = "agent_unavailable"
    http_status = 503

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
