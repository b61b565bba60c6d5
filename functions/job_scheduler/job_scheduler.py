"""Scheduled (EventBridge): one mailbox job per due user, none for a user with a job pending."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from exactly_once.core import aws, db
from exactly_once.core.settings import env
from exactly_once.core.telemetry import flushes_metrics, logger
from exactly_once.core.tracing import traced
from exactly_once.flows.mailbox.scheduling import tick

JOBS_QUEUE_URL = env("JOBS_QUEUE_URL")


@traced
@logger.inject_lambda_context(clear_state=True)
@flushes_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return tick(db.connection(), aws.sqs(), JOBS_QUEUE_URL, datetime.now(UTC)).as_dict()
