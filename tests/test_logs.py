"""The log redactor: what a log line keeps and what it loses.

The end-to-end check (a DEBUG log of whole sessions holds no secret) is
tests/gemini/test_secrets_not_logged.py; these pin the shapes one by one.
"""

from __future__ import annotations

import logging

import pytest

from gateway.auth.credentials import mint_token
from gateway.logs import REDACTED, SecretRedactor

TOKEN = mint_token("s" * 32, "alice", session_id="conversation-7", ttl_s=60)


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        (f"token {TOKEN} seen", "token [redacted] seen"),
        ("> x-goog-api-key: AIzaSecret123", "> x-goog-api-key: [redacted]"),
        ("Authorization: Bearer abc.def", "Authorization: [redacted]"),
        ("offered bearer.abcdef, bearer", "offered bearer.[redacted], bearer"),
        ("GET /ws/alice?is_audio=true&token=abc&session_id=s-1 HTTP/1.1",
         "GET /ws/alice?is_audio=true&token=[redacted]&session_id=[redacted] HTTP/1.1"),
        ("the configured key is K-123-configured.", "the configured key is [redacted]."),
        ("call 5f3a ended after 12.0 s", "call 5f3a ended after 12.0 s"),
    ],
)  # fmt: skip
def test_lines_lose_their_secrets(line: str, kept: str) -> None:
    assert SecretRedactor(["K-123-configured"]).redact(line) == kept


def test_arguments_and_tracebacks_are_redacted() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "url %s", ("/?token=abc",), None)
    try:
        raise ValueError("K-123-configured leaked into an exception")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert SecretRedactor(["K-123-configured"]).filter(record)
    assert record.getMessage() == "url /?token=[redacted]"
    assert record.exc_text is not None
    assert "K-123-configured" not in record.exc_text
    assert REDACTED in record.exc_text
