"""Standard Webhooks, Stripe, GitHub and Slack events: recorded once in the event log.

The effect of these providers is the record itself: one ``event_log`` row per
(provider, event key), written with ``INSERT .. ON CONFLICT`` so a redelivery
that got past ingest dedup (window expired, SQS redelivery after a crash)
only counts another delivery. A flow that acts on one of these events does its
own effect in the same transaction as ``store.record_event`` (see docs/adapters.md).
"""

from __future__ import annotations

from exactly_once.core import db, store
from exactly_once.core.crash import crashpoint
from exactly_once.core.events import InboundEvent
from exactly_once.core.telemetry import Metric, counters, logger


def process(event: InboundEvent) -> str:
    conn = db.connection()
    with conn.transaction():
        deliveries = store.record_event(conn, event, "recorded")
    crashpoint("generic.worker.after_record")
    if deliveries > 1:
        counters.incr(event.provider, Metric.DUP_DATABASE)
        logger.info("duplicate stopped", extra={"layer": "event_log", "deliveries": deliveries})
        return "duplicate"
    counters.incr(event.provider, Metric.EFFECTS)
    return "recorded"
