"""SendQueue (SQS FIFO, group = sender account) -> claim -> provider -> fenced completion."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from exactly_once.core import db, store
from exactly_once.core.telemetry import flushes_metrics, logger
from exactly_once.core.tracing import traced
from exactly_once.sends.delivery import PROVIDER, deliver
from exactly_once.sends.queue import parse_message


def handle_record(record: SQSRecord) -> str:
    try:
        send_id = parse_message(record.body)
    except (ValueError, KeyError, TypeError) as exc:
        reason = f"unreadable send message: {exc}"
        return store.quarantine_unreadable(db.connection(), PROVIDER, record.message_id, record.body, reason)
    logger.set_correlation_id(f"send:{send_id}")
    try:
        outcome = deliver(db.connection(), send_id)
    finally:
        logger.remove_keys(["send_id", "channel"])
    logger.info("send handled", extra={"send_id": send_id, "outcome": outcome})
    return outcome


@traced
@logger.inject_lambda_context(clear_state=True)
@flushes_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return dict(
        process_partial_response(
            event=event,
            record_handler=handle_record,
            processor=SqsFifoPartialProcessor(skip_group_on_error=True),
            context=context,
        )
    )
