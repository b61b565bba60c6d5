"""POST /webhooks/unipile: Unipile messaging webhooks (static secret header, one event per POST)."""

from __future__ import annotations

from typing import Any

from exactly_once.core.telemetry import logger
from exactly_once.core.tracing import traced
from exactly_once.flows.unipile.adapter import UnipileAdapter
from exactly_once.ingest.build import webhook_ingest

# Raises ConfigurationError without UNIPILE_WEBHOOK_SECRET: the function refuses to start unprotected.
INGEST = webhook_ingest(UnipileAdapter.from_env())


@traced
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return INGEST.handle(event, context)
