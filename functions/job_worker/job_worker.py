"""JobsQueue (SQS FIFO, group = user) -> claim the job, read the mailbox, process each mail once."""

from __future__ import annotations

from typing import Any

from exactly_once.core.telemetry import logger
from exactly_once.core.tracing import traced
from exactly_once.flows.mailbox.worker import MailboxJobWorker

WORKER = MailboxJobWorker()


@traced
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return WORKER.handle(event, context)
