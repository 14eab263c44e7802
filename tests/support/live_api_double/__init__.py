"""A local test double of the Gemini Live API (BidiGenerateContent over TLS websockets).

It speaks the real wire protocol to the real google-genai client (and so to ADK's
`Gemini` model), records everything each connection received, and lets each test
script what the "model" does: reply with 24 kHz audio and transcriptions, send
`goAway`, issue resumption handles, drop the TCP connection, close with a code,
refuse a bad API key or an unknown model the way the real service does.

Imports only the standard library, `websockets`, `numpy` and `cryptography`.
"""

from tests.support.live_api_double.certs import SelfSignedCert, make_self_signed_cert
from tests.support.live_api_double.server import (
    LiveApiDouble,
    LiveConnection,
    UserTurn,
    conversational,
)
from tests.support.live_api_double.wire import BAD_KEY_CLOSE, unknown_model_close

__all__ = [
    "BAD_KEY_CLOSE",
    "LiveApiDouble",
    "LiveConnection",
    "SelfSignedCert",
    "UserTurn",
    "conversational",
    "make_self_signed_cert",
    "unknown_model_close",
]
