"""The webhook pipeline every provider's ingest handler runs.

handshake -> size limit -> content type -> authenticate (raw bytes) -> split
-> per-event dedup (DynamoDB) -> one SendMessageBatch -> complete -> answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from exactly_once.adapters.base import QuarantinedBadRequestError, WebhookAdapter
from exactly_once.crash import crashpoint
from exactly_once.dedup import IngestDeduper, Reservation
from exactly_once.errors import HttpError, PayloadTooLargeError, ServiceUnavailableError, UnauthorizedError
from exactly_once.events import InboundEvent, storable
from exactly_once.http import Request, error_response
from exactly_once.queue import EventQueue
from exactly_once.telemetry import Metric, counters, logger


class WebhookIngest:
    """One provider's ingest: the adapter says how, this says in which order."""

    def __init__(self, adapter: WebhookAdapter, deduper: IngestDeduper, queue: EventQueue, max_body_bytes: int) -> None:
        self.adapter = adapter
        self.deduper = deduper
        self.queue = queue
        self.max_body_bytes = max_body_bytes

    def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        provider = self.adapter.provider
        counters.incr(provider, Metric.DELIVERIES)
        try:
            return self._handle(Request.from_apigw_v2(event), _remaining_ms(context))
        except HttpError as exc:
            name = Metric.SIGNATURE_FAILURES if isinstance(exc, UnauthorizedError) else Metric.REJECTED
            counters.incr(provider, name)
            logger.info(
                "webhook rejected",
                extra={
                    "provider": provider,
                    "layer": "ingest",
                    "outcome": "rejected",
                    "status": exc.status,
                    "error": exc.code,
                },
            )
            return error_response(exc)
        finally:
            counters.flush()

    def _handle(self, request: Request, remaining_ms: int | None) -> dict[str, Any]:
        answer = self.adapter.handshake(request)
        if answer is not None:
            logger.info("handshake answered", extra={"provider": self.adapter.provider})
            return answer
        if len(request.raw_body) > self.max_body_bytes:
            raise PayloadTooLargeError(self.max_body_bytes)
        self.adapter.check_content_type(request)
        self.adapter.authenticate(request)
        try:
            split = self.adapter.split(request)
        except QuarantinedBadRequestError as exc:
            self.accept([exc.event], remaining_ms)  # keep the signed bytes, then refuse them
            raise
        accepted, duplicates = self.accept(split.events, remaining_ms)
        return self.adapter.accepted(accepted, duplicates, split.rejected)

    def accept(self, events: list[InboundEvent], remaining_ms: int | None) -> tuple[int, int]:
        """Dedup each event, enqueue the new ones in one batch, then mark them done."""
        provider = self.adapter.provider
        events = [storable(event) for event in events]  # what SQS and Postgres can carry, before the dedup key
        fresh: list[InboundEvent] = []
        duplicates = 0
        # One event per delivery (most providers): its key is the correlation id from ingest to effect.
        # A batch has no single key: each line carries its own "key".
        logger.set_correlation_id(events[0].key if len(events) == 1 else None)
        try:
            for event, outcome in zip(
                events, self.deduper.reserve_many([e.key for e in events], remaining_ms), strict=True
            ):
                if outcome is Reservation.NEW:
                    fresh.append(event)
                else:
                    duplicates += 1
                    counters.incr(provider, Metric.DUP_INGEST)
                    logger.info(
                        "duplicate stopped",
                        extra={"provider": provider, "key": event.key, "layer": "ingest", "outcome": outcome.value},
                    )
        except (BotoCoreError, ClientError) as exc:
            self._release(fresh, exc)
            raise ServiceUnavailableError("dedup store unavailable, retry later") from exc
        if not fresh:
            return 0, duplicates
        crashpoint(f"{provider}.ingest.after_dedup")
        try:
            failed = self.queue.send(fresh)
        except (BotoCoreError, ClientError) as exc:
            self._release(fresh, exc)
            raise ServiceUnavailableError("queue unavailable, retry later") from exc
        crashpoint(f"{provider}.ingest.after_enqueue")
        failed_keys = {event.key for event in failed}
        queued = [event for event in fresh if event.key not in failed_keys]
        self.deduper.complete_many([event.key for event in queued], {"queued": True})
        for event in queued:
            logger.info(
                "event accepted",
                extra={
                    "provider": provider,
                    "key": event.key,
                    "kind": event.kind,
                    "layer": "ingest",
                    "outcome": "accepted",
                },
            )
        if failed:
            self._release(failed, RuntimeError("SendMessageBatch refused the entry"))
            raise ServiceUnavailableError(f"{len(failed)} of {len(fresh)} events were not queued, retry later")
        counters.incr(provider, Metric.ACCEPTED, len(fresh))
        return len(fresh), duplicates

    def _release(self, events: list[InboundEvent], exc: Exception) -> None:
        for event in events:
            try:
                self.deduper.release(event.key, exc)
            except (BotoCoreError, ClientError):
                # The INPROGRESS record then expires with the invocation: the retry still gets through.
                logger.warning(
                    "could not release dedup record",
                    extra={"provider": event.provider, "key": event.key, "layer": "ingest"},
                )


def _remaining_ms(context: Any) -> int | None:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return int(getter()) if callable(getter) else None
