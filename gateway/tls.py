"""HTTPS and WSS served by the gateway itself (`--certfile`/`--keyfile`).

`server_context` loads the certificate chain and key into a TLS server context,
once per serving process (the command line loads them first, only to fail before
the agent loads or any worker starts): TLS 1.2 at least (RFC 8996, BCP 195: TLS 1.0
and 1.1 are not to be negotiated), Python's default cipher suites (seen with
`get_ciphers()` here: ECDHE/DHE only, GCM/ChaCha20 first, no SHA-1), ALPN `http/1.1`
(aiohttp speaks nothing else). Every way the files can be wrong (missing,
unreadable, not PEM, a key that is not the certificate's, a key with a passphrase)
is a `StartupError` naming the file and the cause, never a traceback or a prompt.

May import the stdlib and `errors` (the command line imports it: no aiohttp here).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from gateway.errors import StartupError


class _EncryptedKey(Exception):
    """The key asks for a passphrase: a service cannot type one."""


def _no_passphrase() -> str:
    # Without a password callback OpenSSL prompts on the terminal (Python's
    # `SSLContext.load_cert_chain` docs), which would hang a service at start-up.
    raise _EncryptedKey


def server_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """A TLS server context with `certfile`'s chain and `keyfile`'s key.

    Raises `StartupError` with a one-line reason when they cannot serve."""
    for role, path in (("certificate", certfile), ("key", keyfile)):
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise StartupError(f"cannot read the TLS {role} {path}: {exc.strerror}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(certfile, keyfile, password=_no_passphrase)
    except _EncryptedKey:
        raise StartupError(
            f"the TLS key {keyfile} is encrypted: give the gateway an unencrypted key "
            "(readable by its user only)"
        ) from None
    except ssl.SSLError as exc:
        raise StartupError(
            f"cannot use the TLS certificate {certfile} with the key {keyfile}: {_reason(exc)}"
        ) from None
    return context


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason in words: a key for another certificate, or files that are
    not PEM."""
    reason = exc.reason or ""
    if reason == "KEY_VALUES_MISMATCH":
        return "the key does not belong to the certificate"
    if exc.library == "PEM" or reason == "NO_START_LINE" or "PEM lib" in str(exc):
        return "they are not a PEM certificate chain and its PEM private key (swapped? DER?)"
    return reason or str(exc)
