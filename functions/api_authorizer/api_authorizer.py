"""HTTP API Lambda authorizer for the operator routes: ``Authorization: Bearer <API_TOKEN>``."""

from __future__ import annotations

from typing import Any

from exactly_once.core.secrets import get_secret
from exactly_once.core.telemetry import Metric, counters, flushes_metrics, logger
from exactly_once.core.tracing import traced
from exactly_once.ingest.authorizer import check_token, simple_response

# A configured token under 32 bytes stops the function at init (its Errors alarm pages); none configured
# starts and denies every request, so a stack deployed before its secret is filled stays closed.
check_token(get_secret("API_TOKEN", required=False))


@traced
@flushes_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # Read per request through the secrets cache (SECRETS_MAX_AGE): a rotated token takes effect
    # without a cold start, and a missing one denies every request instead of failing init.
    answer = simple_response(event, get_secret("API_TOKEN", required=False))
    if not answer["isAuthorized"]:
        # Counted: OperatorDenialsAlarm pages on a burst (someone guessing, or a client with an old token).
        counters.incr("operator", Metric.OPERATOR_DENIED)
        logger.info("operator request denied", extra={"layer": "authorizer", "route": event.get("routeKey")})
    return answer
