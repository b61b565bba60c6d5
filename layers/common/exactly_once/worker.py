"""The event worker: SQS FIFO batches, FIFO-aware partial failures, one processor per provider.

A processor raises to have the message retried (then the DLQ after
``maxReceiveCount``); PermanentEventError sends the event to quarantine and
acknowledges it, so a poison message never blocks its group.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from exactly_once import db, store
from exactly_once.errors import PermanentEventError
from exactly_once.events import QUARANTINE_KIND, InboundEvent
from exactly_once.telemetry import Metric, counters, logger

Processor = Callable[[InboundEvent], str]
# Settles a batch's events of one provider at once: (SQS message id, event) in order -> outcomes by id.
BatchProcessor = Callable[[Sequence[tuple[str, InboundEvent]]], dict[str, str]]

# provider -> "module:function"; imported on first use so a worker pays only for what it meets.
PROCESSORS: dict[str, str] = {
    "graph": "exactly_once.processors.graph_mail:process",
    "unipile": "exactly_once.processors.unipile_inbound:process",
    "standard": "exactly_once.processors.generic_event:process",
    "stripe": "exactly_once.processors.generic_event:process",
    "github": "exactly_once.processors.generic_event:process",
    "slack": "exactly_once.processors.generic_event:process",
    "livekit": "exactly_once.processors.livekit_room:process",
    "whatsapp": "exactly_once.processors.whatsapp_inbound:process",
}

# provider -> "module:function" of a batch processor: one Postgres commit for a batch's effects.
# What it leaves unsettled goes through the provider's processor, one record at a time.
BATCH_PROCESSORS: dict[str, str] = {
    "graph": "exactly_once.processors.graph_mail:process_batch",
}


def _imported(paths: Mapping[str, str], loaded: dict[str, Any], provider: str) -> Any:
    """The function ``paths[provider]`` names ("module:function"), imported on first use; None if none."""
    if provider not in loaded:
        path = paths.get(provider)
        if path is None:
            return None
        module, _, name = path.partition(":")
        loaded[provider] = getattr(importlib.import_module(module), name)
    return loaded[provider]


class EventWorker:
    def __init__(
        self, processors: Mapping[str, str] | None = None, batch_processors: Mapping[str, str] | None = None
    ) -> None:
        self._paths = dict(processors or PROCESSORS)
        self._batch_paths = dict(BATCH_PROCESSORS if batch_processors is None else batch_processors)
        self._loaded: dict[str, Processor] = {}
        self._loaded_batch: dict[str, BatchProcessor] = {}

    def processor(self, provider: str) -> Processor | None:
        processor: Processor | None = _imported(self._paths, self._loaded, provider)
        return processor

    def batch_processor(self, provider: str) -> BatchProcessor | None:
        batch: BatchProcessor | None = _imported(self._batch_paths, self._loaded_batch, provider)
        return batch

    def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        processor = SqsFifoPartialProcessor(skip_group_on_error=True)
        try:
            settled = self.settle_batches(event.get("Records") or [])
            return dict(
                process_partial_response(
                    event=dict(event),
                    record_handler=functools.partial(self.handle_record, presettled=settled),
                    processor=processor,
                    context=context,
                )
            )
        finally:
            counters.flush()

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
            if event.kind != QUARANTINE_KIND and event.provider in self._batch_paths:
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

    def handle_record(self, record: SQSRecord, presettled: Mapping[str, str] | None = None) -> str:
        try:
            event = InboundEvent.from_message(record.body)
        except (ValueError, KeyError, TypeError) as exc:
            return self._quarantine_raw(record, f"unreadable queue message: {exc}")
        logger.set_correlation_id(event.key)
        logger.append_keys(provider=event.provider, key=event.key, layer="worker")
        if event.replay:
            counters.incr(event.provider, Metric.REPLAYED)
            logger.append_keys(replay_of=event.replay.get("original_key"), replay_by=event.replay.get("by"))
        try:
            early = (presettled or {}).get(record.message_id)
            if early is not None:
                logger.info("event settled", extra={"outcome": early, "batched": True})
                return early
            outcome = self._settle(event)
            if event.replay:
                from exactly_once import replay  # operator replays are rare: no import cost otherwise

                replay.settled(db.connection(), event, outcome)
            return outcome
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

    def _quarantine(self, event: InboundEvent, reason: str) -> str:
        conn = db.connection()
        with conn.transaction():
            qid = store.quarantine_event(conn, event, reason)
            store.record_event(conn, event, "quarantined", qid, keep_payload=False)
        counters.incr(event.provider, Metric.QUARANTINED)
        logger.warning("event quarantined", extra={"outcome": "quarantined", "reason": reason, "quarantine_id": qid})
        return "quarantined"

    def _quarantine_raw(self, record: SQSRecord, reason: str) -> str:
        conn = db.connection()
        store.quarantine(
            conn,
            provider="unknown",
            event_key=f"sqs:{record.message_id}",
            reason=reason,
            raw=json.dumps({"body": record.body}),
        )
        counters.incr("unknown", Metric.QUARANTINED)
        logger.warning(
            "queue message quarantined",
            extra={"key": f"sqs:{record.message_id}", "layer": "worker", "outcome": "quarantined", "reason": reason},
        )
        return "quarantined"
