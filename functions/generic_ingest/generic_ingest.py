"""POST /webhooks/standard/{source}, /webhooks/stripe, /webhooks/github, /webhooks/slack.

One function for the four: they share a warm pool (fewer cold starts against
Slack's 3 s budget), one log group and one policy; the route picks the adapter,
and a provider without a secret answers 503 without stopping the others.
"""

from __future__ import annotations

from typing import Any

from exactly_once.adapters.github import GitHubAdapter
from exactly_once.adapters.slack import SlackAdapter
from exactly_once.adapters.standard_webhooks import StandardWebhooksAdapter
from exactly_once.adapters.stripe import StripeAdapter
from exactly_once.routing import IngestRouter
from exactly_once.telemetry import logger
from exactly_once.wiring import webhook_ingest

ROUTER = IngestRouter(
    {
        "/webhooks/standard/{source}": StandardWebhooksAdapter.from_env,
        "/webhooks/stripe": StripeAdapter.from_env,
        "/webhooks/github": GitHubAdapter.from_env,
        "/webhooks/slack": SlackAdapter.from_env,
    },
    wire=webhook_ingest,  # each adapter gets the shared pipeline, its own dedup key prefix and window
)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return ROUTER.handle(event, context)
