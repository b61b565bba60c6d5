"""A static bearer token for the operator routes (POST /sends, /jobs/...), checked in constant time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exactly_once.ingest.adapters.base import secrets_equal


def is_authorized(headers: Mapping[str, str] | None, token: str) -> bool:
    if not token:
        return False  # refuse to run open: a missing secret denies everything
    value = {k.lower(): v for k, v in (headers or {}).items()}.get("authorization", "")
    scheme, _, given = value.partition(" ")
    return scheme.lower() == "bearer" and secrets_equal(given.strip(), token)


def simple_response(event: Mapping[str, Any], token: str) -> dict[str, Any]:
    """HTTP API Lambda authorizer, payload 2.0 with simple responses."""
    return {"isAuthorized": is_authorized(event.get("headers"), token)}
