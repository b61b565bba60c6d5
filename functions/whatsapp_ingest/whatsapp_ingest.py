"""GET and POST /webhooks/whatsapp: the WhatsApp Cloud API verification handshake and webhooks."""

from __future__ import annotations

from typing import Any

from exactly_once.adapters.whatsapp import DEFAULT_DEDUP_WINDOW_SECONDS, MAX_BODY_BYTES, WhatsAppAdapter
from exactly_once.concurrent_dedup import DEFAULT_WORKERS
from exactly_once.secrets import get_secret
from exactly_once.settings import IngestSettings, env, env_int
from exactly_once.telemetry import logger
from exactly_once.wiring import webhook_ingest

INGEST = webhook_ingest(
    WhatsAppAdapter(
        get_secret("WHATSAPP_APP_SECRET"),
        get_secret("WHATSAPP_VERIFY_TOKEN"),
        dedup_window_seconds=env_int("WHATSAPP_DEDUP_WINDOW_SECONDS", DEFAULT_DEDUP_WINDOW_SECONDS),
    ),
    # Meta posts up to 3 MB; a variable of its own, since every function shares MAX_BODY_BYTES locally.
    IngestSettings(
        idempotency_table=env("IDEMPOTENCY_TABLE"),
        events_queue_url=env("EVENTS_QUEUE_URL"),
        max_body_bytes=env_int("WHATSAPP_MAX_BODY_BYTES", MAX_BODY_BYTES),
    ),
    # Meta batches up to 1000 updates per POST: their dedup writes run concurrently.
    dedup_workers=env_int("WHATSAPP_DEDUP_WORKERS", DEFAULT_WORKERS),
)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return INGEST.handle(event, context)
