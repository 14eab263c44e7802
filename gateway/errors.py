"""The gateway's errors, each carrying its wire code, HTTP status and retry-after.

Raised anywhere below the edges. `error_reply` is the one place an exception becomes
what a client is told, whatever the transport: the HTTP edge (`signaling.py`, the
workers' internal app), the WebSocket transport and a call's data channel all render
its `ErrorReply`. Messages are safe to show to a client: they never carry SDP,
transcripts, tokens or user ids. `StartupError` is the operator's side: the gateway
cannot start. Standard library only (the supervisor imports this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

#: The protection space of the gateway's bearer credentials (RFC 6750).
REALM = "adk-webrtc-gateway"
#: RFC 9457 §3: the media type of every HTTP error body.
PROBLEM_JSON_TYPE = "application/problem+json"
#: Our own URN namespace, for problem types (RFC 9457 §3.1.1) and the WHIP extension
#: we advertise (RFC 9725 §4.9). Not `urn:ietf:params:whip:ext:...`: RFC 9725 §4.9
#: has each extension register that name with IANA (§6, Specification Required), and
#: we have no registration. An `x-` namespace identifier is the experimental, never
#: registered form (RFC 3406 §4.1, since obsoleted by RFC 8141): a private name that
#: cannot pass for an IETF one. Link relation types may be any URI (RFC 8288 §2.1.2).
URN_BASE = "urn:x-adk-webrtc-gateway"
#: RFC 9457 §3.1.1: one problem type per wire code, `<PROBLEM_TYPE_BASE><code>`.
PROBLEM_TYPE_BASE = f"{URN_BASE}:error:"
#: WebSocket close code for a failure of ours (RFC 6455 "internal error").
WS_INTERNAL_ERROR = 1011
#: WebSocket close codes for gateway errors: this plus the error's HTTP status.
WS_CLOSE_CODE_BASE = 4000


class StartupError(Exception):
    """The gateway cannot start; the message says why, in one line fit for an operator."""


class GatewayError(Exception):
    """Base class: `code` goes on the wire, `http_status` at the HTTP edge, and
    `retry_after_s` (when set) tells the client the failure is temporary. Subclasses
    name theirs in the class line: `class Gone(GatewayError, code="gone", http_status=410)`."""

    code: str = "internal"
    http_status: int = 500
    #: Retry-After for this kind of error when the raiser gives none; None: do not retry.
    default_retry_after_s: ClassVar[int | None] = None
    _by_code: ClassVar[dict[str, type[GatewayError]]] = {}

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = (
            retry_after_s if retry_after_s is not None else self.default_retry_after_s
        )

    def __init_subclass__(
        cls,
        *,
        code: str,
        http_status: int | None = None,
        retry_after_s: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.code = code
        cls.http_status = http_status or cls.http_status
        cls.default_retry_after_s = retry_after_s or cls.default_retry_after_s
        GatewayError._by_code.setdefault(code, cls)

    @classmethod
    def from_wire(
        cls, code: str, message: str, *, http_status: int, retry_after_s: int | None = None
    ) -> GatewayError:
        """The error another gateway process answered with, as the same class here
        (so `except AtCapacity` works across processes); an unknown code keeps its
        code and status."""
        known = GatewayError._by_code.get(code)
        if known is not None and known.http_status == http_status:
            return known(message, retry_after_s=retry_after_s)
        error = GatewayError(message, retry_after_s=retry_after_s)
        error.code, error.http_status = code, http_status
        return error


class BadRequest(GatewayError, code="bad_request", http_status=400):
    """The request cannot be used as it is (the message says what is wrong)."""


class InvalidSdp(BadRequest, code="invalid_sdp"):
    """An offer or a trickled candidate that is not SDP the gateway can use."""


class NoAudioInOffer(BadRequest, code="no_audio"):
    """An offer without an audio m-line: there is nothing to talk over."""


class InvalidMessage(BadRequest, code="invalid_message"):
    """A data-channel, WebSocket or JSON message we cannot use."""


class Unauthorized(GatewayError, code="unauthorized", http_status=401):
    """No credential, or one that is not valid (bad signature, expired, unknown key)."""


class Forbidden(GatewayError, code="forbidden", http_status=403):
    """A valid credential that does not grant this resource."""


class RateLimited(GatewayError, code="rate_limited", http_status=429, retry_after_s=10):
    """Too many requests from this address or credential; retry after `retry_after_s`."""


class TooManySessions(GatewayError, code="too_many_sessions", http_status=429, retry_after_s=30):
    """The user has as many live calls as one user may; one must end first."""


class MessageTooLarge(BadRequest, code="message_too_large"):
    """A data-channel message larger than the gateway's answer advertised
    (`a=max-message-size`): the caller broke the limit it was given; the call ends."""


class UnsupportedMediaType(GatewayError, code="unsupported_media_type", http_status=415):
    """A body of another content type than the endpoint takes."""


class PayloadTooLarge(GatewayError, code="payload_too_large", http_status=413):
    """A body past the configured limit, refused before it is parsed."""


class RequestTimeout(GatewayError, code="request_timeout", http_status=408):
    """A request body that did not arrive in time (`body_timeout_s`)."""


class NotFound(GatewayError, code="not_found", http_status=404):
    """Nothing by that name."""


class MethodNotAllowed(GatewayError, code="method_not_allowed", http_status=405):
    """A method the resource does not take (the response's `Allow` lists those it
    does; RFC 9725 §4.2 reserves the others)."""


class PreconditionFailed(GatewayError, code="precondition_failed", http_status=412):
    """`If-Match` names another ICE session than the call's (RFC 9725 §4.3.2, RFC 9110
    §13.1.1): the request was meant for an earlier or another session."""


class PreconditionRequired(GatewayError, code="precondition_required", http_status=428):
    """A trickle `PATCH` without `If-Match` (RFC 9725 §4.3.2, RFC 6585 §3)."""


class IceRestartUnsupported(GatewayError, code="ice_restart_unsupported", http_status=422):
    """A `PATCH` with new ICE credentials: the gateway does trickle ICE but cannot
    restart ICE (aiortc has no ICE restart), so RFC 9725 §4.3.1 prescribes 422; the
    call and its ICE session go on (§4.3.3). Moving the call is the way out."""


class UnknownCall(NotFound, code="unknown_call"):
    """No live call has that id (it ended, or never was)."""


class UnknownSession(NotFound, code="unknown_session"):
    """No conversation has that `session_id`."""


class AtCapacity(GatewayError, code="at_capacity", http_status=503, retry_after_s=5):
    """Too many live calls; the client should retry after `retry_after_s`."""


class TooManyPending(GatewayError, code="too_many_pending", http_status=429, retry_after_s=5):
    """Too many calls from one source address are still connecting: each makes the
    gateway send ICE checks, so a source must connect some before offering more."""


class AgentUnavailable(GatewayError, code="agent_unavailable", http_status=503, retry_after_s=5):
    """The agent could not start (bad credentials, unknown model, unreachable)."""


class RegistryUnavailable(
    GatewayError, code="registry_unavailable", http_status=503, retry_after_s=5
):
    """The fleet's registry (Redis) cannot say which instance owns a call that is not
    on this one; calls on this instance, and new calls, still work."""


class OwnerUnavailable(GatewayError, code="owner_unavailable", http_status=503, retry_after_s=2):
    """The instance that owns the call did not answer a forwarded request (it stopped
    or is stuck: its calls leave the registry when its heartbeat lapses)."""


class WorkerUnavailable(GatewayError, code="worker_unavailable", http_status=503):
    """Another worker process did not answer in time (it is restarting or stuck)."""


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error as a client sees it, on any transport."""

    code: str
    message: str
    http_status: int
    retry_after_s: int | None
    #: Not the client's doing nor a known, passing condition: worth an operator's look.
    unexpected: bool

    def http_headers(self) -> dict[str, str]:
        headers = {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        if self.http_status == 401:  # RFC 6750 §3: how to authenticate
            headers["WWW-Authenticate"] = f'Bearer realm="{REALM}"'
        return headers

    def http_body(self) -> dict[str, Any]:
        """RFC 9457 problem details (`type`, `title`, `status`, `detail`) plus our `code`
        (an extension member, §3.2), and the legacy `error` object that clients written
        before (`client/call.js`, the workers' routing) read."""
        return {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": status_title(self.http_status),
            "status": self.http_status,
            "detail": self.message,
            "code": self.code,
            "error": {"code": self.code, "message": self.message},
        }

    @property
    def websocket_close_code(self) -> int:
        if self.code == GatewayError.code:
            return WS_INTERNAL_ERROR
        return WS_CLOSE_CODE_BASE + self.http_status


def status_title(status: int) -> str:
    """The status's reason phrase (RFC 9110 §15), the problem's `title`: constant for
    each of our codes, since each code has one status."""
    if status == 422:  # RFC 9110 §15.5.21's name; Python 3.11 has RFC 4918's
        return "Unprocessable Content"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_reply(exc: BaseException) -> ErrorReply:
    """What a client is told about `exc`: a gateway error as it is; anything else (a
    bug) as an opaque internal error."""
    if isinstance(exc, GatewayError):
        return ErrorReply(
            code=exc.code,
            message=exc.message,
            http_status=exc.http_status,
            retry_after_s=exc.retry_after_s,
            unexpected=exc.http_status >= 500 and exc.retry_after_s is None,
        )
    return ErrorReply(GatewayError.code, "internal error", 500, None, unexpected=True)
