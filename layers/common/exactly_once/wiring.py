"""Builds a provider's ingest pipeline from the environment (once per container)."""

from __future__ import annotations

from exactly_once import aws
from exactly_once.adapters.base import WebhookAdapter
from exactly_once.dedup import IngestDeduper
from exactly_once.ingest import WebhookIngest
from exactly_once.queue import EventQueue
from exactly_once.settings import IngestSettings


def webhook_ingest(
    adapter: WebhookAdapter, settings: IngestSettings | None = None, *, dedup_workers: int = 1
) -> WebhookIngest:
    """``dedup_workers`` > 1: the events of one delivery are deduped concurrently (big batches, e.g. Meta's)."""
    settings = settings or IngestSettings.from_env()
    key_prefix = f"{adapter.provider}-ingest"
    deduper: IngestDeduper
    if dedup_workers > 1:
        from exactly_once.concurrent_dedup import ConcurrentDeduper

        deduper = ConcurrentDeduper(
            settings.idempotency_table,
            key_prefix=key_prefix,
            window_seconds=adapter.dedup_window_seconds,
            client=aws.dynamodb(),
            workers=dedup_workers,
        )
    else:
        deduper = IngestDeduper(
            settings.idempotency_table,
            key_prefix=key_prefix,
            window_seconds=adapter.dedup_window_seconds,
            client=aws.dynamodb(),
        )
    return WebhookIngest(
        adapter,
        deduper,
        EventQueue(settings.events_queue_url, aws.sqs()),
        settings.max_body_bytes,
        in_progress_wait_ms=settings.in_progress_wait_ms,
    )
