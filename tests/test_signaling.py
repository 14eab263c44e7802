"""Signaling edge: every client mistake gets the right 4xx and leaves nothing behind.

Pins down (each case also passes the autouse leak check: no peer connection, task
or socket remains after the failed request):
- 415 wrong content type, 413 oversized (with and without Content-Length), before parsing;
- 400 for SDP aiortc cannot use, one case per parser failure class in FIELD-NOTES
  (AttributeError, AssertionError, KeyError, IndexError, TypeError, StopIteration),
  and for invalid payload types even under `python -O`;
- 400 for an offer without audio, 404 unknown call or session, 503 + Retry-After at capacity;
- the JSON `/offer` endpoint validates its body the same way.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.fakes import FakeAgentConnector
from tests.support.peers import HeadlessCaller

SDP = {"Content-Type": "application/sdp"}


@pytest.fixture
async def valid_offer() -> str:
    caller = HeadlessCaller()
    try:
        return await caller.offer()
    finally:
        await caller.close()


def mutate(offer: str, pattern: str, replacement: str) -> str:
    mutated, count = re.subn(pattern, replacement, offer, count=1, flags=re.MULTILINE)
    assert count == 1, f"pattern {pattern!r} not in offer"
    return mutated


def section(offer: str, kind: str) -> str:
    """The offer's m-section of `kind`, its lines ending in CRLF."""
    start = offer.index(f"m={kind} ")
    end = offer.find("\r\nm=", start)
    return offer[start:] if end < 0 else offer[start : end + 2]


def with_section(offer: str, kind: str, m_line: str, mid: str) -> str:
    """The offer plus a copy of its `kind` section under another m-line and mid."""
    copy = section(offer, kind)
    copy = re.sub(r"^m=.*$", m_line, copy, count=1, flags=re.MULTILINE)
    return offer + re.sub(r"^a=mid:.*$", f"a=mid:{mid}", copy, flags=re.MULTILINE)


HOSTILE_OFFERS: dict[str, Callable[[str], str]] = {
    "garbage": lambda _: "this is not sdp at all",
    "empty": lambda _: "",
    "fingerprint_without_value": lambda o: mutate(o, r"^a=fingerprint:.*$", "a=fingerprint"),
    "rtpmap_without_value": lambda o: mutate(o, r"^a=rtpmap:.*$", "a=rtpmap"),
    "candidate_without_value": lambda o: mutate(o, r"^a=candidate:.*$", "a=candidate"),
    "bad_m_line": lambda o: mutate(o, r"^m=audio .*$", "m=audio"),
    "payload_type_over_255": lambda o: mutate(o, r"^(m=audio \S+ \S+) (\d+)", r"\1 300"),
    "payload_type_in_rtcp_range": lambda o: mutate(o, r"^(m=audio \S+ \S+) (\d+)", r"\1 72"),
    "unknown_address_type": lambda o: mutate(o, r"^c=IN IP4 ", "c=IN IP9 "),
    "unknown_setup_role": lambda o: mutate(o, r"^a=setup:\w+", "a=setup:bogus"),
    "rtpmap_without_clock_rate": lambda o: mutate(
        o, r"^a=rtpmap:(\d+) opus/48000/2", r"a=rtpmap:\1 opus"
    ),
    "sctp_port_without_value": lambda o: mutate(o, r"^a=sctp-port:\d+", "a=sctp-port"),
    "no_supported_codec": lambda o: re.sub(r"opus/48000/2", "nocodec/48000/2", o),
    "no_audio_m_line": lambda o: (
        o.split("m=audio")[0] + "m=application" + o.split("m=application")[1]
    ),
    "no_ice_credentials": lambda o: re.sub(r"^a=ice-(ufrag|pwd):.*\r\n", "", o, flags=re.MULTILINE),
    "no_fingerprint": lambda o: re.sub(r"^a=fingerprint:.*\r\n", "", o, flags=re.MULTILINE),
    # Issue 12: each of these was a 500 (createAnswer/setLocalDescription unguarded).
    "no_mid": lambda o: mutate(o, r"^a=mid:0\r\n", ""),
    "direction_with_junk": lambda o: mutate(o, r"^a=sendrecv\r\n", "a=sendrecv x\r\n"),
    "text_section": lambda o: with_section(o, "audio", "m=text 9 UDP/TLS/RTP/SAVPF 0", "2"),
    # ... and what else aiortc cannot answer, refused before it sees the offer.
    "duplicate_mid": lambda o: mutate(o, r"^a=mid:1\r\n", "a=mid:0\r\n"),
    "mid_too_long": lambda o: mutate(o, r"^a=mid:0\r\n", "a=mid:" + "m" * 17 + "\r\n"),
    "bundle_names_unknown_mid": lambda o: mutate(
        o, r"^a=group:BUNDLE .*\r\n", "a=group:BUNDLE 7 0\r\n"
    ),
    "bundle_names_a_mid_twice": lambda o: mutate(
        o, r"^a=group:BUNDLE .*\r\n", "a=group:BUNDLE 0 0\r\n"
    ),
    "second_audio_section": lambda o: with_section(
        o, "audio", "m=audio 9 UDP/TLS/RTP/SAVPF 96", "2"
    ),
    "data_channel_without_port": lambda o: mutate(o, r"^a=sctp-port:\d+\r\n", ""),
    "no_rtcp_mux": lambda o: mutate(o, r"^a=rtcp-mux\r\n", ""),
    "extension_id_out_of_range": lambda o: mutate(o, r"^a=extmap:1 ", "a=extmap:300 "),
    "ufrag_too_short": lambda o: re.sub(r"^a=ice-ufrag:[^\r\n]*", "a=ice-ufrag:abc", o, flags=re.M),
    "ufrag_too_long": lambda o: re.sub(
        r"^a=ice-ufrag:[^\r\n]*", "a=ice-ufrag:" + "u" * 257, o, flags=re.MULTILINE
    ),
    "ufrag_of_30_kb": lambda o: re.sub(
        r"^a=ice-ufrag:[^\r\n]*", "a=ice-ufrag:" + "u" * 30_000, o, flags=re.MULTILINE
    ),
    "pwd_too_short": lambda o: re.sub(r"^a=ice-pwd:[^\r\n]*", "a=ice-pwd:short", o, flags=re.M),
    "ufrag_not_ice_chars": lambda o: re.sub(
        r"^a=ice-ufrag:[^\r\n]*", "a=ice-ufrag:has spaces", o, flags=re.MULTILINE
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_OFFERS))
async def test_hostile_offer_is_a_clean_400(
    case: str, valid_offer: str, start_gateway: Callable[..., Any]
) -> None:
    connector = FakeAgentConnector()
    client: TestClient[Any, Any] = await start_gateway(connector)
    body = HOSTILE_OFFERS[case](valid_offer)
    response = await client.post("/calls", data=body.encode(), headers=SDP)
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["code"] in {"invalid_sdp", "no_audio"}
    assert "v=0" not in error["message"]  # no SDP echoed back
    json_response = await client.post("/offer", json={"sdp": body or "x", "type": "offer"})
    assert json_response.status == 400
    assert not [s for s in connector.sessions if not s.closed]  # no agent session left open
    assert (await (await client.get("/healthz")).json())["calls"] == 0


async def test_wrong_content_type_and_size(
    valid_offer: str, start_gateway: Callable[..., Any]
) -> None:
    client: TestClient[Any, Any] = await start_gateway(FakeAgentConnector(), max_offer_bytes=4096)
    wrong = await client.post("/calls", data=valid_offer, headers={"Content-Type": "text/plain"})
    assert wrong.status == 415
    assert (await wrong.json())["error"]["code"] == "unsupported_media_type"
    big = valid_offer + "a=x-padding:" + "x" * 5000 + "\r\n"
    assert (await client.post("/calls", data=big, headers=SDP)).status == 413

    async def chunked() -> Any:  # no Content-Length: the limit still holds while reading
        for _ in range(10):
            yield b"a" * 1000

    assert (await client.post("/calls", data=chunked(), headers=SDP)).status == 413
    assert (await client.post("/calls", data=b"\xff\xfe\x00", headers=SDP)).status == 400
    assert (await client.post("/offer", data="{}", headers=SDP)).status == 415


async def test_json_offer_validation(valid_offer: str, start_gateway: Callable[..., Any]) -> None:
    client: TestClient[Any, Any] = await start_gateway(FakeAgentConnector())
    cases = [
        ("not json", 400),
        ("[]", 400),
        ('{"type": "offer"}', 400),
        ('{"sdp": "x", "type": "answer"}', 400),
        ('{"sdp": "x", "type": "offer", "mode": "video"}', 400),
        ('{"sdp": "x", "type": "offer", "session_id": "bad id!"}', 400),
    ]
    for body, status in cases:
        response = await client.post(
            "/offer", data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status == status, body
        assert "error" in await response.json()
    unknown = await client.post(
        "/offer", json={"sdp": valid_offer, "type": "offer", "session_id": "nope"}
    )
    assert unknown.status == 404
    assert (await unknown.json())["error"]["code"] == "unknown_session"


async def test_query_validation_and_unknown_ids(
    valid_offer: str, start_gateway: Callable[..., Any]
) -> None:
    client: TestClient[Any, Any] = await start_gateway(FakeAgentConnector())
    assert (await client.post("/calls?mode=video", data=valid_offer, headers=SDP)).status == 400
    assert (
        await client.post("/calls?session_id=a%20b", data=valid_offer, headers=SDP)
    ).status == 400
    assert (  # a whole id: `$` alone would let a trailing newline through
        await client.post("/calls?session_id=abc%0A", data=valid_offer, headers=SDP)
    ).status == 400
    unknown = await client.post("/calls?session_id=missing", data=valid_offer, headers=SDP)
    assert unknown.status == 404
    assert (await client.delete("/calls/does-not-exist")).status == 404
    assert (await client.get("/calls")).status == 405


async def test_at_capacity_is_503_with_retry_after(start_gateway: Callable[..., Any]) -> None:
    client: TestClient[Any, Any] = await start_gateway(FakeAgentConnector(), max_calls=1)
    first, second = HeadlessCaller(), HeadlessCaller()
    try:
        response = await client.post("/calls", data=await first.offer(), headers=SDP)
        assert response.status == 201
        refused = await client.post("/calls", data=await second.offer(), headers=SDP)
        assert refused.status == 503
        assert int(refused.headers["Retry-After"]) > 0
        assert (await refused.json())["error"]["code"] == "at_capacity"
        assert (await client.delete(response.headers["Location"])).status == 204
    finally:
        await first.close()
        await second.close()


def test_payload_types_are_checked_without_asserts(valid_offer: str) -> None:
    """aiortc's payload-type checks are asserts, gone under `python -O`; ours are not."""
    offer = HOSTILE_OFFERS["payload_type_in_rtcp_range"](valid_offer)
    code = (
        "import sys\nfrom gateway.rtc.peer_connection import validate_offer\n"
        "from gateway.errors import InvalidSdp\n"
        "try:\n    validate_offer(sys.stdin.read())\nexcept InvalidSdp:\n    sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-O", "-c", code], input=offer, text=True, capture_output=True, timeout=60
    )
    assert result.returncode == 3, result.stderr
