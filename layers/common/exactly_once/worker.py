"""The event worker: SQS FIFO batches, FIFO-aware partial failures, one processor per provider.

A processor raises to have the message retried (then the DLQ after
``maxReceiveCount``); PermanentEventError sends the event to quarantine and
acknowledges it, so a poison message never blocks its group. RetryLaterError (a
Graph 429 with Retry-After, too little of the invocation left for a fetch) fails
the item too, but the message comes back after the wait it names
(ChangeMessageVisibility), not the queue's visibility timeout; so do the messages
of its group the batch skipped after it. SQS counts every receive and a visibility
change does not give one back: a deferral costs the one receive it came on, and no
retry happens before the wait is over.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from exactly_once.core import aws, db, deadline, store
from exactly_once.core.declaration import Provider
from exactly_once.core.errors import PermanentEventError, RetryLaterError
from exactly_once.core.events import QUARANTINE_KIND, InboundEvent
from exactly_once.core.telemetry import Metric, counters, flushes_metrics, logger
from exactly_once.providers import PROVIDERS
from exactly_once.sends import forward
from exactly_once.sends import queue as send_queue

Processor = Callable[[InboundEvent], str]
# Settles a batch's events of one provider at once: (SQS message id, event) in order -> outcomes by id.
BatchProcessor = Callable[[Sequence[tuple[str, InboundEvent]]], dict[str, str]]
MAX_VISIBILITY_SECONDS = 43_200  # SQS's ceiling on a visibility timeout (12 h)


class EventWorker:
    """Settles events with each provider's declared processor (``exactly_once.providers``)."""

    def __init__(self, providers: Mapping[str, Provider] | None = None) -> None:
        self._providers = PROVIDERS if providers is None else providers

    def processor(self, provider: str) -> Processor | None:
        declared = self._providers.get(provider)
        return None if declared is None or declared.processor is None else cast(Processor, declared.processor.load())

    def batch_processor(self, provider: str) -> BatchProcessor | None:
        declared = self._providers.get(provider)
        if declared is None or declared.batch_processor is None:
            return None
        return cast(BatchProcessor, declared.batch_processor.load())

    @flushes_metrics
    def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        deadline.start(context)
        processor = SqsFifoPartialProcessor(skip_group_on_error=True)
        records = event.get("Records") or []
        settled = self.settle_batches(records)
        deferred: dict[str, float] = {}
        forwards: list[int] = []  # forward sends this batch queued, relayed once it is done
        try:
            response = dict(
                process_partial_response(
                    event=dict(event),
                    record_handler=functools.partial(
                        self.handle_record, presettled=settled, deferred=deferred, forwards=forwards
                    ),
                    processor=processor,
                    context=context,
                )
            )
        except BatchProcessingError:  # every record failed: the invocation fails, after the deferrals are set
            if deferred:
                _defer(records, {str(r.get("messageId")) for r in records}, deferred)
            raise
        finally:
            send_queue.relay_committed(forwards, "forward")
        if deferred:
            failures = cast(list[dict[str, str]], response.get("batchItemFailures") or [])
            _defer(records, {f["itemIdentifier"] for f in failures}, deferred)
        return response

    def settle_batches(self, records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """Outcomes, by SQS message id, of the events a batch processor settled ahead of the records.

        Only an optimisation: whatever is not settled here (or all of it, when a batch processor
        fails) goes through ``handle_record``, where every layer of protection applies as usual.
        """
        by_provider: dict[str, list[tuple[str, InboundEvent]]] = {}
        for record in records:
            try:
                event = InboundEvent.from_message(str(record["body"]))
            except (ValueError, KeyError, TypeError):
                continue  # handle_record quarantines it
            if event.kind != QUARANTINE_KIND and self.batch_processor(event.provider) is not None:
                by_provider.setdefault(event.provider, []).append((str(record["messageId"]), event))
        settled: dict[str, str] = {}
        for provider, events in by_provider.items():
            batch = self.batch_processor(provider)
            if batch is None or len(events) < 2:
                continue
            try:
                settled.update(batch(events))
            except Exception as exc:  # every event is then settled one by one
                logger.warning(
                    "batch settle failed, events go one by one",
                    extra={"provider": provider, "layer": "worker", "error": type(exc).__name__},
                )
        return settled

    def handle_record(
        self,
        record: SQSRecord,
        presettled: Mapping[str, str] | None = None,
        deferred: dict[str, float] | None = None,
        forwards: list[int] | None = None,
    ) -> str:
        try:
            event = InboundEvent.from_message(record.body)
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"unreadable queue message: {exc}"
            return store.quarantine_unreadable(
                db.connection(), "unknown", record.message_id, record.body, reason, layer="worker"
            )
        logger.set_correlation_id(event.key)
        logger.append_keys(provider=event.provider, key=event.key, layer="worker")
        if event.replay:
            counters.incr(event.provider, Metric.REPLAYED)
            logger.append_keys(replay_of=event.replay.get("original_key"), replay_by=event.replay.get("by"))
        try:
            early = (presettled or {}).get(record.message_id)
            if early is not None:
                logger.info("event settled", extra={"outcome": early, "batched": True})
                self._forward(event, early, forwards)
                return early
            outcome = self._settle(event)
            if event.replay:
                store.replay_settled(db.connection(), event, outcome)
            self._forward(event, outcome, forwards)
            return outcome
        except RetryLaterError as exc:
            # Reported failed like any error, but not counted as one: handle() sets when it comes back.
            if deferred is not None:
                deferred[record.message_id] = exc.retry_after
            logger.info(
                "event deferred", extra={"outcome": "deferred", "retry_after": exc.retry_after, "reason": str(exc)}
            )
            raise
        except Exception as exc:
            # Re-raised: the batch processor reports the message failed, SQS retries it, then the DLQ takes it.
            # The error's type only: its text may quote a provider's answer.
            counters.incr(event.provider, Metric.FAILED)
            logger.warning("event failed, will be retried", extra={"outcome": "retry", "error": type(exc).__name__})
            raise
        finally:
            logger.remove_keys(["provider", "key", "layer", "replay_of", "replay_by"])
            logger.set_correlation_id(None)

    def _settle(self, event: InboundEvent) -> str:
        if event.kind == QUARANTINE_KIND:
            return self._quarantine(event, str(event.payload.get("reason") or "unprocessable delivery"))
        processor = self.processor(event.provider)
        if processor is None:
            return self._quarantine(event, f"no processor for provider {event.provider!r}")
        try:
            outcome = processor(event)
        except PermanentEventError as exc:
            return self._quarantine(event, str(exc))
        logger.info("event settled", extra={"outcome": outcome})
        return outcome

    @staticmethod
    def _forward(event: InboundEvent, outcome: str, forwards: list[int] | None) -> None:
        """Queue the settled event's forward when forwarding is on (sends/forward.py). After the settle:
        a crash or an error here fails the message, and its re-delivery, a duplicate, queues it."""
        send_id = forward.enqueue(db.connection(), event, outcome)
        if send_id is not None and forwards is not None:
            forwards.append(send_id)
        elif send_id is not None:
            send_queue.relay_committed([send_id], "forward")

    def _quarantine(self, event: InboundEvent, reason: str) -> str:
        conn = db.connection()
        with conn.transaction():
            qid = store.quarantine_event(conn, event, reason)
            store.record_event(conn, event, "quarantined", qid, keep_payload=False)
        counters.incr(event.provider, Metric.QUARANTINED)
        logger.warning("event quarantined", extra={"outcome": "quarantined", "reason": reason, "quarantine_id": qid})
        return "quarantined"


def _defer(records: Sequence[Mapping[str, Any]], failed: set[str], deferred: Mapping[str, float]) -> None:
    """Make each deferred message (and its group's later ones the batch skipped) visible after its wait."""
    queue_url = os.environ.get("EVENTS_QUEUE_URL")
    waits: dict[str, int] = {}
    by_group: dict[str, int] = {}
    for record in records:
        message_id = str(record.get("messageId"))
        group = str((record.get("attributes") or {}).get("MessageGroupId") or "")
        if message_id in deferred:
            waits[message_id] = by_group[group] = min(MAX_VISIBILITY_SECONDS, max(0, math.ceil(deferred[message_id])))
        elif message_id in failed and group and group in by_group:
            waits[message_id] = by_group[group]
    handles = {str(r.get("messageId")): str(r.get("receiptHandle")) for r in records}
    entries = [
        {"Id": str(i), "ReceiptHandle": handles[mid], "VisibilityTimeout": wait}
        for i, (mid, wait) in enumerate(waits.items())
        if mid in failed
    ]
    if not entries or not queue_url:
        return
    try:
        answer = aws.sqs().change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]
        refused = len(answer.get("Failed") or [])
    except Exception as exc:  # the messages then wait out the queue's visibility timeout: later, never lost
        logger.warning("could not defer events", extra={"layer": "worker", "error": type(exc).__name__})
        return
    if refused:
        logger.warning("some events not deferred", extra={"layer": "worker", "refused": refused})
