"""A local test double of the Gemini Live API (BidiGenerateContent over TLS websockets).

It speaks the real wire protocol to the real google-genai client (and so to ADK's
`Gemini` model) as one of the late-2026 live model generations (`gemini-3.8-live` by
default, or the legacy `gemini-3.1-flash-live-preview`), records everything each
connection received, and lets each test script what the "model" does: reply with
24 kHz audio and transcriptions, call tools (blocking or not, with scheduling),
stall the ways 3.x models are reported to, send `goAway`, issue resumption handles,
drop the TCP connection, close with a code, refuse a bad API key, an unknown model
or a setup field the model does not accept, the way the real service does.

Modules: `server` (the listening double), `connection` (one session's records and
primitives), `model` (scripted behaviours), `generations` (setup rules), `inputs`,
`speech`, `stalls`, `wire`, `audio`, `certs`.

Imports only the standard library, `websockets`, `numpy` and `cryptography`.
"""

from tests.support.live_api_double.certs import SelfSignedCert, make_self_signed_cert
from tests.support.live_api_double.connection import LiveConnection
from tests.support.live_api_double.generations import (
    DEFAULT_TOOL_BEHAVIOR,
    GENERATION_MODELS,
    Generation,
)
from tests.support.live_api_double.inputs import Nudge, ToolResult, UserTurn
from tests.support.live_api_double.model import (
    Behaviour,
    ScriptedModel,
    ToolCallingModel,
    conversational,
    tool_calling,
)
from tests.support.live_api_double.server import LiveApiDouble
from tests.support.live_api_double.stalls import OwedReply, StallKind
from tests.support.live_api_double.wire import (
    BAD_KEY_CLOSE,
    INVALID_ARGUMENT_CLOSE,
    MEDIA_CHUNKS_CLOSE,
    unknown_model_close,
)

__all__ = [
    "BAD_KEY_CLOSE",
    "DEFAULT_TOOL_BEHAVIOR",
    "GENERATION_MODELS",
    "INVALID_ARGUMENT_CLOSE",
    "MEDIA_CHUNKS_CLOSE",
    "Behaviour",
    "Generation",
    "LiveApiDouble",
    "LiveConnection",
    "Nudge",
    "OwedReply",
    "ScriptedModel",
    "SelfSignedCert",
    "StallKind",
    "ToolCallingModel",
    "ToolResult",
    "UserTurn",
    "conversational",
    "make_self_signed_cert",
    "tool_calling",
    "unknown_model_close",
]
