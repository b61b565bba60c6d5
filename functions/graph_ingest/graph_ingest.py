"""POST /webhooks/graph: Microsoft Graph change notifications (and the validationToken handshake)."""

from __future__ import annotations

from typing import Any

from exactly_once.adapters.graph import GraphAdapter
from exactly_once.secrets import get_secret
from exactly_once.settings import env_int
from exactly_once.telemetry import logger
from exactly_once.wiring import webhook_ingest

INGEST = webhook_ingest(
    GraphAdapter(get_secret("GRAPH_CLIENT_STATE"), dedup_window_seconds=env_int("GRAPH_DEDUP_WINDOW_SECONDS", 86_400))
)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return INGEST.handle(event, context)
