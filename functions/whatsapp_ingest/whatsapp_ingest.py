"""GET and POST /webhooks/whatsapp: the WhatsApp Cloud API verification handshake and webhooks."""

from __future__ import annotations

from typing import Any

from exactly_once import aws
from exactly_once.adapters.whatsapp import DEFAULT_DEDUP_WINDOW_SECONDS, MAX_BODY_BYTES, WhatsAppAdapter
from exactly_once.concurrent_dedup import DEFAULT_WORKERS, ConcurrentDeduper
from exactly_once.ingest import WebhookIngest
from exactly_once.queue import EventQueue
from exactly_once.secrets import get_secret
from exactly_once.settings import env, env_int
from exactly_once.telemetry import logger

ADAPTER = WhatsAppAdapter(
    get_secret("WHATSAPP_APP_SECRET"),
    get_secret("WHATSAPP_VERIFY_TOKEN"),
    dedup_window_seconds=env_int("WHATSAPP_DEDUP_WINDOW_SECONDS", DEFAULT_DEDUP_WINDOW_SECONDS),
)
# Meta batches up to 1000 updates per POST: the dedup writes of one POST run concurrently.
INGEST = WebhookIngest(
    ADAPTER,
    ConcurrentDeduper(
        env("IDEMPOTENCY_TABLE"),
        key_prefix="whatsapp-ingest",  # pinned, as wiring.webhook_ingest pins it for every provider
        window_seconds=ADAPTER.dedup_window_seconds,
        client=aws.dynamodb(),
        workers=env_int("WHATSAPP_DEDUP_WORKERS", DEFAULT_WORKERS),
    ),
    EventQueue(env("EVENTS_QUEUE_URL"), aws.sqs()),
    # Meta posts up to 3 MB; a variable of its own, since every function shares MAX_BODY_BYTES locally.
    env_int("WHATSAPP_MAX_BODY_BYTES", MAX_BODY_BYTES),
)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return INGEST.handle(event, context)
