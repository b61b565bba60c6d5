"""JobsQueue (SQS FIFO, group = user) -> claim the job, read the mailbox, process each mail once."""

from __future__ import annotations

from typing import Any

from exactly_once.mailbox_worker import MailboxJobWorker
from exactly_once.telemetry import logger

WORKER = MailboxJobWorker()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return WORKER.handle(event, context)
