"""POST /webhooks/livekit: LiveKit room, participant, track and egress events."""

from __future__ import annotations

from typing import Any

from exactly_once.adapters.livekit import LiveKitAdapter
from exactly_once.secrets import get_secret
from exactly_once.settings import env_int
from exactly_once.telemetry import logger
from exactly_once.wiring import webhook_ingest

INGEST = webhook_ingest(
    LiveKitAdapter(
        get_secret("LIVEKIT_API_KEY"),
        get_secret("LIVEKIT_API_SECRET"),
        leeway_seconds=env_int("LIVEKIT_TOKEN_LEEWAY_SECONDS", 10),
        dedup_window_seconds=env_int("LIVEKIT_DEDUP_WINDOW_SECONDS", 86_400),
    )
)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return INGEST.handle(event, context)
