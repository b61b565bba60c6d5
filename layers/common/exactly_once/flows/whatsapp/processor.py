"""WhatsApp webhook events -> a message stored once with exactly one bot reply; statuses applied in order.

A message: the responder decides the reply outside any transaction (a real bot may be
slow), then ONE transaction inserts the message (unique on its wamid) and, only if the
insert happened, enqueues the reply in the send queue under ``reply:{wamid}``. A duplicate,
whether a millisecond or a week later, finds the wamid stored: no insert, no reply. A
concurrent duplicate waits on the uncommitted row and then finds it; a worker that dies
mid-transaction rolls back and the queue's redelivery starts over. No lease can expire
under the work. After commit the reply is relayed to the send queue's SQS FIFO; if that
fails, the send queue's sweeper relays it.

A status: one upsert that only moves the delivery status forward (see sql/whatsapp.sql).

A routine field update (``field:<name>``: template status, account, quality updates): its record
in the event log is the effect (``INSERT .. ON CONFLICT``, payload kept), counted per field kind.
"""

from __future__ import annotations

import functools
from typing import Any

import psycopg

from exactly_once.core import db, store
from exactly_once.core.crash import crashpoint
from exactly_once.core.errors import PermanentEventError
from exactly_once.core.events import InboundEvent
from exactly_once.core.telemetry import Metric, counters, logger
from exactly_once.flows.whatsapp import store as whatsapp_store
from exactly_once.flows.whatsapp.messages import DELIVERY_STATUSES, InboundMessage, parse_message, parse_status
from exactly_once.flows.whatsapp.responders import Responder, load_responder
from exactly_once.sends import queue as send_queue
from exactly_once.sends.request import InvalidSendError, SendRequest, default_policy

PROVIDER = "whatsapp"


@functools.cache
def responder() -> Responder:
    return load_responder()


def reply_key(wamid: str) -> str:
    """The send queue's idempotency key of the one reply to a message."""
    return f"reply:{wamid}"


def process(event: InboundEvent) -> str:
    if event.kind.startswith("status:"):
        return _status(event)
    if event.kind.startswith("message:"):
        return _message(event)
    if event.kind.startswith("field:"):
        return _field(event)
    raise PermanentEventError(f"unknown WhatsApp event kind {event.kind!r}")


def _message(event: InboundEvent) -> str:
    conn = db.connection()
    seen = store.already_settled(conn, event)
    if seen is not None:
        counters.incr(PROVIDER, Metric.DUP_QUEUE)
        logger.info("duplicate stopped", extra={"layer": "worker_event_log", "outcome": seen.outcome})
        return f"duplicate:{seen.outcome}"
    message = parse_message(event.payload)
    text = responder().reply(message)
    if text is not None and (not isinstance(text, str) or not text.strip()):
        text = None  # an empty answer is no answer
    crashpoint("whatsapp.worker.after_responder")
    relay_id: int | None = None
    try:
        with conn.transaction():
            row_id = whatsapp_store.insert_message(conn, message)
            if row_id is None:
                store.record_event(conn, event, "duplicate", keep_payload=False)
                outcome = "duplicate"
            else:
                outcome = "stored_no_reply"
                if text is not None:
                    enqueued = _enqueue_reply(conn, message, text)
                    outcome = "replied" if enqueued.created else "stored_reply_exists"
                    relay_id = enqueued.id if enqueued.created else None
                store.record_event(conn, event, outcome, row_id, keep_payload=False)
            crashpoint("whatsapp.worker.before_commit")
    except psycopg.errors.DataError as exc:
        # Text Postgres cannot store (a NUL character, ...): retrying cannot help; the worker quarantines it.
        raise PermanentEventError(f"message cannot be stored: {exc}") from exc
    crashpoint("whatsapp.worker.after_commit")
    if outcome == "duplicate":
        counters.incr(PROVIDER, Metric.DUP_DATABASE)
        logger.info("duplicate stopped", extra={"layer": "database", "wamid": message.wamid})
        return outcome
    counters.incr(PROVIDER, Metric.EFFECTS)
    if relay_id is not None:
        counters.incr(PROVIDER, Metric.REPLIES_ENQUEUED)
        _relay(relay_id)
    logger.info("message stored", extra={"outcome": outcome, "wamid": message.wamid, "type": message.type})
    return outcome


def _enqueue_reply(conn: psycopg.Connection[Any], message: InboundMessage, text: str) -> send_queue.Enqueued:
    """The reply joins the message's transaction: stored and replied, or neither.

    The key can only exist already when the message row was purged (retention) and Meta
    re-delivered it: the reply queued back then stands, whatever the bot answers now.
    The delivery policy is the channel's, as POST /sends reads it (SEND_POLICY_WHATSAPP).
    """
    try:
        return send_queue.enqueue(
            conn,
            SendRequest(
                idempotency_key=reply_key(message.wamid),
                channel="whatsapp",
                sender_account=message.phone_number_id,
                recipient=message.wa_id,
                payload={"text": text},
                policy=default_policy("whatsapp"),
            ),
        )
    except send_queue.IdempotencyConflictError as exc:
        return send_queue.Enqueued(exc.existing_id, created=False, status="existing")
    except InvalidSendError as exc:
        raise PermanentEventError(f"reply cannot be queued: {exc}") from exc


def _relay(send_id: int) -> None:
    send_queue.relay_committed([send_id], "reply")
    crashpoint("whatsapp.worker.after_relay")


def _status(event: InboundEvent) -> str:
    conn = db.connection()
    update = parse_status(event.payload)
    if update.status not in DELIVERY_STATUSES:
        # A status this code does not know: kept (with its payload) in the event log, not applied.
        store.record_event(conn, event, "status_unknown")
        logger.warning("unknown WhatsApp status", extra={"status": update.status})
        return "status_unknown"
    try:
        with conn.pipeline(), conn.transaction():
            result = whatsapp_store.apply_status(conn, update)
            outcome = "status_applied" if result.applied else "status_stale"
            store.record_event(conn, event, outcome, update.provider_message_id, keep_payload=False)
    except psycopg.errors.DataError as exc:
        raise PermanentEventError(f"status cannot be stored: {exc}") from exc
    crashpoint("whatsapp.status.after_commit")
    counters.incr(PROVIDER, Metric.STATUSES_APPLIED if result.applied else Metric.STATUSES_STALE)
    return outcome


def _field(event: InboundEvent) -> str:
    """Recorded once with its payload (an operator reads a template's REJECTED reason there)."""
    conn = db.connection()
    try:
        with conn.transaction():
            deliveries = store.record_event(conn, event, "recorded")
    except psycopg.errors.DataError as exc:
        raise PermanentEventError(f"field update cannot be stored: {exc}") from exc
    crashpoint("whatsapp.field.after_record")
    if deliveries > 1:
        counters.incr(PROVIDER, Metric.DUP_DATABASE)
        logger.info("duplicate stopped", extra={"layer": "event_log", "deliveries": deliveries})
        return "duplicate"
    counters.incr(PROVIDER, Metric.FIELD_UPDATES)
    logger.info("field update recorded", extra={"field": event.kind.removeprefix("field:")})
    return "recorded"
