"""Scheduled (EventBridge): one mailbox job per due user, none for a user with a job pending."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from exactly_once import aws, db
from exactly_once.mailbox_scheduling import tick
from exactly_once.settings import env
from exactly_once.telemetry import counters, logger

JOBS_QUEUE_URL = env("JOBS_QUEUE_URL")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        return tick(db.connection(), aws.sqs(), JOBS_QUEUE_URL, datetime.now(UTC)).as_dict()
    finally:
        counters.flush()
