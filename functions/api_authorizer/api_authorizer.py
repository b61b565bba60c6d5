"""HTTP API Lambda authorizer for the operator routes: ``Authorization: Bearer <API_TOKEN>``."""

from __future__ import annotations

from typing import Any

from exactly_once.core.secrets import get_secret
from exactly_once.core.telemetry import logger
from exactly_once.ingest.authorizer import simple_response


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # Read per request through the secrets cache (SECRETS_MAX_AGE): a rotated token takes effect
    # without a cold start, and a missing one denies every request instead of failing init.
    answer = simple_response(event, get_secret("API_TOKEN", required=False))
    if not answer["isAuthorized"]:
        logger.info("operator request denied", extra={"layer": "authorizer", "route": event.get("routeKey")})
    return answer
