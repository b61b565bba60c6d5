"""POST /webhooks/standard/{source}, /webhooks/stripe, /webhooks/github, /webhooks/slack.

One function for the four: they share a warm pool (fewer cold starts against
Slack's 3 s budget), one log group and one policy; the route picks the adapter,
and a provider without a secret answers 503 without stopping the others.
"""

from __future__ import annotations

from typing import Any

from exactly_once.core.telemetry import logger
from exactly_once.core.tracing import traced
from exactly_once.flows import generic
from exactly_once.ingest.router import IngestRouter

# Each provider of the flow on its declared route (flows/generic/__init__.py), with the shared
# pipeline, its own dedup key prefix and window.
ROUTER = IngestRouter.serving(generic.FLOW.providers)


@traced
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return ROUTER.handle(event, context)
