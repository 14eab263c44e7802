"""GStreamer's webrtcbin (RSA DTLS certificate) calls the gateway, in both DTLS roles.

Pins down, against a real independent peer (`gst_whip_caller.py` under the system
Python, the same DTLS code as `whipclientsink`):
- an `a=setup:actpass` offer (webrtcbin's default) is answered `a=setup:passive`: the
  caller is the DTLS client, the handshake completes, audio flows both ways (the fake
  agent hears the caller's sine, the caller decodes the agent's tone) and the data
  channel delivers `session`;
- an offer that says `a=setup:passive` makes the gateway the DTLS client of an RSA
  server: the same call works (the gateway's client offers ECDHE-RSA suites too);
- the caller's certificate really is RSA, so these tests keep meaning what they say.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.audio.pcm import rms
from tests.interop import peers
from tests.support.fakes import FakeAgentConnector

LISTEN_S = 4.0
AGENT_TONE_S = 3.0
#: `level` reports dBFS RMS every 100 ms; the agent's tone (amplitude 8000) decodes at
#: about -15 dBFS, silence at -100 or below.
HEARD_DB = -40.0


@pytest.mark.parametrize(
    ("offer_setup", "answer_setup", "caller_is_dtls_client"),
    [("actpass", "passive", True), ("passive", "active", False)],
    ids=["caller-dtls-client", "gateway-dtls-client"],
)
async def test_an_rsa_peer_connects_and_talks_in_either_dtls_role(
    gstreamer: None,
    start_gateway: Callable[..., Any],
    offer_setup: str,
    answer_setup: str,
    caller_is_dtls_client: bool,
) -> None:
    connector = FakeAgentConnector()
    client = await start_gateway(connector)
    async with peers.agent_speaks_to_every_caller(connector, AGENT_TONE_S):
        caller = await peers.start(
            peers.GST_PYTHON,
            str(peers.GST_CALLER),
            "--url",
            str(client.make_url("/calls")),
            "--offer-setup",
            offer_setup,
            "--seconds",
            str(LISTEN_S),
            env=peers.GST_ENV,
        )
        async with caller:
            report = await caller.report()

    assert report["http_status"] == 201, caller.diagnosis(report)
    certificate = x509.load_pem_x509_certificate(report["certificate_pem"].encode())
    assert isinstance(certificate.public_key(), rsa.RSAPublicKey)
    assert report["dtls_state"] == "connected", caller.diagnosis(report)
    assert "connected" in report["connection_states"], caller.diagnosis(report)
    heard = [db for db in report["levels_db"] if db > HEARD_DB]
    assert len(heard) >= 15, caller.diagnosis(report)  # >= 1.5 s of the 3 s tone
    messages = [json.loads(m) for m in report["messages"]]
    assert messages, caller.diagnosis(report)
    assert messages[0]["type"] == "session", report["messages"]
    assert rms(bytes(connector.last.audio)) > 1000  # the caller's sine reached the agent
    assert report["answer_setup"] == answer_setup
    assert report["dtls_client"] is caller_is_dtls_client
