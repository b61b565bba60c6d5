"""The webhook pipeline every provider's ingest handler runs.

handshake -> size limit -> content type -> authenticate (raw bytes) -> split
-> per-event dedup (DynamoDB) -> SendMessageBatch -> complete -> answer.

A key another invocation holds (reserved, not yet completed) is not a duplicate yet: its
holder may have died between the dedup write and SendMessageBatch. Once this delivery's
own events are queued, ingest waits a little (``in_progress_wait_ms``) for the holder to
complete it; if it does not, the answer is a retryable 503, never a 2xx the provider would
take as "delivered". The retry finds this delivery's events as duplicates, and the held key
either completed or, past the holder's deadline, free to be reserved again.

The error boundary: the deduper and the queue raise the library's ``DedupUnavailableError`` and
``QueueUnavailableError``; this module alone turns them into the provider's answer (a retryable 503).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from exactly_once.core.crash import crashpoint
from exactly_once.core.errors import (
    DedupUnavailableError,
    HttpError,
    PayloadTooLargeError,
    QueueUnavailableError,
    ServiceUnavailableError,
    UnauthorizedError,
)
from exactly_once.core.events import InboundEvent, storable
from exactly_once.core.fifo import EventQueue
from exactly_once.core.telemetry import Metric, counters, flushes_metrics, logger
from exactly_once.ingest.adapters.base import QuarantinedBadRequestError, WebhookAdapter
from exactly_once.ingest.apigw import Request, error_response
from exactly_once.ingest.dedup import IngestDeduper, Reservation

#: How long a delivery waits for another invocation to complete a key it holds (a concurrent copy
#: of the same delivery completes within tens of milliseconds; a dead holder never does).
DEFAULT_IN_PROGRESS_WAIT_MS = 1000
#: Time kept back from the invocation's deadline: the wait ends this long before it, to answer in time.
DEFAULT_DEADLINE_MARGIN_MS = 500
# Polls of a held key: the first at once, then after 25, 50, 100, 200, 200... ms.
_FIRST_POLL_S = 0.025
_MAX_POLL_S = 0.2


class WebhookIngest:
    """One provider's ingest: the adapter says how, this says in which order."""

    def __init__(
        self,
        adapter: WebhookAdapter,
        deduper: IngestDeduper,
        queue: EventQueue,
        max_body_bytes: int,
        *,
        in_progress_wait_ms: int = DEFAULT_IN_PROGRESS_WAIT_MS,
        deadline_margin_ms: int = DEFAULT_DEADLINE_MARGIN_MS,
    ) -> None:
        self.adapter = adapter
        self.deduper = deduper
        self.queue = queue
        self.max_body_bytes = max_body_bytes
        self.in_progress_wait_ms = max(0, in_progress_wait_ms)
        self.deadline_margin_ms = max(0, deadline_margin_ms)

    @flushes_metrics
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
        if accepted + duplicates:
            # One value per POST; its Average over a period is the duplicate rate the alarm watches.
            share = 100.0 * duplicates / (accepted + duplicates)
            counters.incr(self.adapter.provider, Metric.DUPLICATE_SHARE, share, MetricUnit.Percent)
        return self.adapter.accepted(accepted, duplicates, split.rejected)

    def accept(self, events: list[InboundEvent], remaining_ms: int | None) -> tuple[int, int]:
        """Dedup each event, enqueue the new ones, mark them done, then settle the keys others hold.

        ``remaining_ms``: the invocation's time left, as of this call (None: no deadline known).
        """
        started = time.monotonic()
        events = [storable(event) for event in events]  # what SQS and Postgres can carry, before the dedup key
        fresh: list[InboundEvent] = []
        held: list[InboundEvent] = []  # reserved by another invocation that has not completed them (yet)
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
                elif outcome is Reservation.IN_PROGRESS:
                    held.append(event)
                else:
                    duplicates += 1
                    self._duplicate(event, outcome)
        except DedupUnavailableError as exc:
            self._release(fresh, exc)
            raise ServiceUnavailableError("dedup store unavailable, retry later") from exc
        if fresh:
            self._enqueue(fresh)
        if held:
            duplicates += self._await_holders(held, started, remaining_ms)
        return len(fresh), duplicates

    def _enqueue(self, fresh: list[InboundEvent]) -> None:
        """One SendMessageBatch per SQS batch, then complete what was queued; 503 if SQS refused any."""
        provider = self.adapter.provider
        crashpoint(f"{provider}.ingest.after_dedup")
        try:
            failed = self.queue.send(fresh)
        except QueueUnavailableError as exc:
            self._release(fresh, exc)
            raise ServiceUnavailableError("queue unavailable, retry later") from exc
        crashpoint(f"{provider}.ingest.after_enqueue")
        failed_keys = {event.key for event in failed}
        queued = [event for event in fresh if event.key not in failed_keys]
        if queued:
            counters.incr(provider, Metric.ACCEPTED, len(queued))  # in the queue, whatever the answer says
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

    def _await_holders(self, held: list[InboundEvent], started: float, remaining_ms: int | None) -> int:
        """Poll keys other invocations hold until they complete (duplicates: their count) or the wait ends.

        The wait ends after ``in_progress_wait_ms``, never later than ``deadline_margin_ms`` before the
        invocation's deadline, and at once when a record is gone (its holder released it after a
        failure, or its deadline passed). Any key still not completed then makes the answer a 503.
        """
        provider = self.adapter.provider
        now = time.monotonic()
        deadline = now + self.in_progress_wait_ms / 1000
        if remaining_ms is not None:
            deadline = min(deadline, started + (remaining_ms - self.deadline_margin_ms) / 1000)
        pending = held
        completed = 0
        delay = _FIRST_POLL_S
        while True:
            try:
                states = self.deduper.state_many([event.key for event in pending])
            except DedupUnavailableError as exc:
                raise ServiceUnavailableError("dedup store unavailable, retry later") from exc
            waiting: list[InboundEvent] = []
            gone = False
            for event, state in zip(pending, states, strict=True):
                if state is Reservation.DUPLICATE:
                    completed += 1
                    self._duplicate(event, state)
                elif state is Reservation.IN_PROGRESS:
                    waiting.append(event)
                else:
                    gone = True
                    waiting.append(event)
            pending = waiting
            now = time.monotonic()
            if not pending or gone or now >= deadline:
                break
            time.sleep(min(delay, deadline - now))
            delay = min(delay * 2, _MAX_POLL_S)
        if pending:
            for event in pending:
                logger.info(
                    "event held by another delivery",
                    extra={"provider": provider, "key": event.key, "layer": "ingest", "outcome": "in_progress"},
                )
            raise ServiceUnavailableError(
                f"{len(pending)} of {len(held)} events are being processed by another delivery, retry later",
                code="in_progress",
            )
        return completed

    def _duplicate(self, event: InboundEvent, outcome: Reservation) -> None:
        counters.incr(self.adapter.provider, Metric.DUP_INGEST)
        logger.info(
            "duplicate stopped",
            extra={"provider": self.adapter.provider, "key": event.key, "layer": "ingest", "outcome": outcome.value},
        )

    def _release(self, events: list[InboundEvent], exc: Exception) -> None:
        for event in events:
            try:
                self.deduper.release(event.key, exc)
            except DedupUnavailableError:
                # The INPROGRESS record then expires with the invocation: the retry still gets through.
                logger.warning(
                    "could not release dedup record",
                    extra={"provider": event.provider, "key": event.key, "layer": "ingest"},
                )


def _remaining_ms(context: Any) -> int | None:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return int(getter()) if callable(getter) else None
