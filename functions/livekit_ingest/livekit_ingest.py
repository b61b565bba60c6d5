"""POST /webhooks/livekit: LiveKit room, participant, track and egress events."""

from __future__ import annotations

from typing import Any

from exactly_once.core.telemetry import logger
from exactly_once.core.tracing import traced
from exactly_once.flows.livekit.adapter import LiveKitAdapter
from exactly_once.ingest.build import webhook_ingest

INGEST = webhook_ingest(LiveKitAdapter.from_env())


@traced
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return INGEST.handle(event, context)
