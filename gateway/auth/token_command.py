"""`python -m gateway token --user alice [--session S] [--ttl SECONDS]`: print a call token.

Signed with the configured `GATEWAY_JWT_SECRET` (or `--jwt-secret`), for testing and
for simple backends that would rather run this than use a JWT library. Tokens for a
public-key deployment are minted by whoever holds the private key.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gateway.auth.credentials import mint_token

DEFAULT_TTL_S = 600


def token_command(argv: Sequence[str]) -> int:
    """Print a token on stdout; exit status 0, or 2 with a reason on stderr."""
    parser = argparse.ArgumentParser(
        prog="adk-webrtc-gateway token",
        description="Print a call token (JWT, HS256) signed with the gateway's secret.",
    )
    parser.add_argument("--user", required=True, help="The user id (the token's `sub`).")
    parser.add_argument("--session", help="Bind the token to this conversation (`sid`).")
    parser.add_argument(
        "--ttl", type=float, default=DEFAULT_TTL_S, help="Seconds the token is valid."
    )
    parser.add_argument("--jwt-secret", help="Default: GATEWAY_JWT_SECRET.")
    args = parser.parse_args(argv)
    secret = args.jwt_secret or os.environ.get("GATEWAY_JWT_SECRET")
    if not secret:
        print("adk-webrtc-gateway token: set GATEWAY_JWT_SECRET or --jwt-secret", file=sys.stderr)
        return 2
    if args.ttl <= 0:
        print("adk-webrtc-gateway token: --ttl must be positive", file=sys.stderr)
        return 2
    try:
        token = mint_token(secret, args.user, session_id=args.session, ttl_s=args.ttl)
    except ValueError as exc:
        print(f"adk-webrtc-gateway token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0
