"""A static bearer token for the operator routes (POST /sends, /jobs/..., the console), checked in constant time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exactly_once.core.errors import ConfigurationError
from exactly_once.ingest.adapters.base import secrets_equal

#: Shorter operator tokens can be guessed: one is refused at start and never authorizes (issue 16).
MIN_TOKEN_BYTES = 32


def check_token(token: str) -> None:
    """Raise ConfigurationError for a configured token under ``MIN_TOKEN_BYTES`` (none configured passes)."""
    if token and len(token.encode("utf-8")) < MIN_TOKEN_BYTES:
        raise ConfigurationError(
            f"API_TOKEN must be at least {MIN_TOKEN_BYTES} bytes: put a random one (openssl rand -base64 32)"
        )


def is_authorized(headers: Mapping[str, str] | None, token: str) -> bool:
    if len(token.encode("utf-8")) < MIN_TOKEN_BYTES:
        return False  # refuse to run open: a missing or guessable token denies everything
    value = {k.lower(): v for k, v in (headers or {}).items()}.get("authorization", "")
    scheme, _, given = value.partition(" ")
    return scheme.lower() == "bearer" and secrets_equal(given.strip(), token)


def simple_response(event: Mapping[str, Any], token: str) -> dict[str, Any]:
    """HTTP API Lambda authorizer, payload 2.0 with simple responses."""
    return {"isAuthorized": is_authorized(event.get("headers"), token)}
