"""Builds a provider's ingest pipeline from the environment (once per container)."""

from __future__ import annotations

from exactly_once.core import aws
from exactly_once.core.fifo import EventQueue
from exactly_once.core.settings import IngestSettings
from exactly_once.ingest.adapters.base import WebhookAdapter
from exactly_once.ingest.dedup import IngestDeduper
from exactly_once.ingest.pipeline import WebhookIngest


def webhook_ingest(adapter: WebhookAdapter, settings: IngestSettings | None = None) -> WebhookIngest:
    """The shared pipeline around ``adapter``, with its own dedup key prefix, window, concurrency and body limit."""
    settings = settings or IngestSettings.from_env()
    key_prefix = f"{adapter.provider}-ingest"
    deduper = IngestDeduper(
        settings.idempotency_table,
        key_prefix=key_prefix,
        window_seconds=adapter.dedup_window_seconds,
        client=aws.dynamodb(),
        workers=adapter.dedup_workers,
    )
    return WebhookIngest(
        adapter,
        deduper,
        EventQueue(settings.events_queue_url, aws.sqs()),
        adapter.max_body_bytes or settings.max_body_bytes,
        in_progress_wait_ms=settings.in_progress_wait_ms,
    )
