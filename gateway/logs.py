"""Logging for the gateway's processes: one format, and no secrets in any line.

Secrets reach logs through libraries more often than through our own code: at DEBUG
the `websockets` client prints every handshake header (google-genai sends the Gemini
key as `x-goog-api-key`), and a URL logged anywhere carries its query (`token=`,
`session_id=`). So every line passes `SecretRedactor` on its way to the handler:
the secrets the gateway was configured with are replaced wherever they appear, and
so is anything shaped like a credential (a JWT, a bearer header, a secret-named
query parameter or header). The `websockets` frame log, which holds whole Live API
messages, and the database drivers' statement logs, which hold session ids and
conversation content, stay at WARNING even when the gateway logs at DEBUG (SQLAlchemy logs
statements at INFO).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "[redacted]"

#: Loggers kept at WARNING or above whatever the level: their DEBUG lines are whole
#: protocol messages (headers, frames) or database statements with their rows
#: (session ids, conversation content).
QUIETED_LOGGERS = ("websockets", "aiosqlite", "sqlalchemy")

_CREDENTIAL_SHAPES = re.compile(
    # A JWT (three base64url parts; the first two are JSON objects, so start "eyJ").
    r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]*"
    # A credential in a header or a subprotocol: the name stays, the value goes.
    r"|(?P<scheme>(?i:\b(?:bearer[ .]|basic\s))\s*)[^\s,;\"']+"
    r"|(?P<header>(?i:(?:x-goog-api-key|authorization|sec-websocket-protocol|cookie)"
    r"\s*[:=]\s*))[^\r\n]+"
    # Secret-named parameters in a query string, a form or a repr.
    r"|(?P<param>(?i:\b(?:token|session_id|sessionid|sid|key|api_key|secret|password)=))"
    r"[^&\s\"',)]+"
)


class SecretRedactor(logging.Filter):
    """Rewrites each record's message with secrets replaced by `[redacted]`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _CREDENTIAL_SHAPES.sub(_keep_name, text)


def _keep_name(match: re.Match[str]) -> str:
    """`token=abc` -> `token=[redacted]`, `Authorization: Bearer x` -> `Authorization:
    [redacted]`, a bare JWT -> `[redacted]`."""
    name = match.group("header") or match.group("param") or match.group("scheme") or ""
    return name + REDACTED


def configure_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> None:
    """Log at `level` in `fmt` to stderr, every line through a `SecretRedactor`."""
    logging.basicConfig(level=level, format=fmt)
    redactor = SecretRedactor(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    for name in QUIETED_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
