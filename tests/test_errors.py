"""The error family and its one rendering, and the supervisor's light imports.

Pins down:
- every gateway error carries its status, wire code and retry-after; temporary
  ones (at capacity, agent unavailable) say when to retry, others do not;
- `error_reply` is what every transport shows: HTTP body (RFC 9457 problem details
  with our `code` and the legacy `error` object) and headers, WebSocket close code;
  a bug is an opaque `internal` error, never its message;
- an error answered by another worker comes back as the same class;
- the supervisor process (`python -m gateway` with several workers) imports
  neither aiohttp nor aiortc nor ADK.
"""

from __future__ import annotations

import subprocess
import sys
from http import HTTPStatus

import pytest

from gateway.errors import (
    AgentUnavailable,
    AtCapacity,
    GatewayError,
    InvalidSdp,
    UnknownCall,
    WorkerUnavailable,
    error_reply,
)


def test_temporary_errors_say_when_to_retry() -> None:
    assert AtCapacity("full").retry_after_s == 5
    assert AtCapacity("full", retry_after_s=9).retry_after_s == 9
    assert AgentUnavailable("down").retry_after_s == 5
    assert InvalidSdp("bad").retry_after_s is None
    assert WorkerUnavailable("slow").retry_after_s is None


@pytest.mark.parametrize(
    ("error", "status", "headers", "ws_close", "unexpected"),
    [
        (InvalidSdp("the offer is not valid SDP"), 400, {}, 4400, False),
        (UnknownCall("no such call"), 404, {}, 4404, False),
        (AtCapacity("full", retry_after_s=7), 503, {"Retry-After": "7"}, 4503, False),
        (AgentUnavailable("no key"), 503, {"Retry-After": "5"}, 4503, False),
        (WorkerUnavailable("slow"), 503, {}, 4503, True),
    ],
)
def test_one_reply_for_every_transport(
    error: GatewayError, status: int, headers: dict[str, str], ws_close: int, unexpected: bool
) -> None:
    reply = error_reply(error)
    assert reply.http_status == status
    assert reply.http_headers() == headers
    assert reply.http_body() == {
        "type": f"urn:x-adk-webrtc-gateway:error:{error.code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": error.message,
        "code": error.code,
        "error": {"code": error.code, "message": error.message},
    }
    assert reply.websocket_close_code == ws_close
    assert reply.unexpected is unexpected


def test_a_bug_is_an_opaque_internal_error() -> None:
    reply = error_reply(KeyError("secret detail"))
    assert (reply.code, reply.message, reply.http_status) == ("internal", "internal error", 500)
    assert reply.websocket_close_code == 1011
    assert reply.unexpected


def test_an_error_from_another_worker_keeps_its_class() -> None:
    again = GatewayError.from_wire("at_capacity", "full", http_status=503, retry_after_s=3)
    assert isinstance(again, AtCapacity)
    assert again.retry_after_s == 3
    assert GatewayError.from_wire("at_capacity", "full", http_status=503).retry_after_s == 5
    unknown = GatewayError.from_wire("teapot", "short and stout", http_status=418)
    assert type(unknown) is GatewayError
    assert (unknown.code, unknown.http_status, unknown.message) == (
        "teapot",
        418,
        "short and stout",
    )


def test_the_supervisor_imports_no_media_web_or_agent_stack() -> None:
    probe = (
        "import sys, gateway.cli, gateway.cluster.supervisor;"
        "heavy = {'aiohttp', 'aiortc', 'aioice', 'av', 'google.adk', 'google.genai'};"
        "print(sorted(m for m in sys.modules if {m.split('.')[0], m[:10], m[:12]} & heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
