"""The send worker's effect for one queued row: claim, call the provider, settle under the fence.

Outcomes: ``sent``; ``rescheduled`` (warning or rate limit: pending again at the resume time,
the sender paused); ``retry`` (the request surely never left: pending with backoff); ``failed``
(a permanent answer); ``unknown`` (timeout or 5xx after the request may have left: never resent
blindly, see send_reconcile); ``deferred`` (pacing); ``not_due``; ``duplicate:<status>``
(someone else holds or settled the row); ``fenced_out`` (the claim was taken over).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors

from exactly_once.core import store
from exactly_once.core.crash import crashpoint
from exactly_once.core.errors import ProviderCallError, ProviderTimeoutError
from exactly_once.core.queries import q
from exactly_once.core.telemetry import Metric, counters, logger
from exactly_once.sends import queue as send_queue
from exactly_once.sends import window
from exactly_once.sends.channels import sender
from exactly_once.sends.queue import NotClaimed, SendClaim

PROVIDER = "send_queue"
MAX_BACKOFF_SECONDS = 300


def deliver(conn: psycopg.Connection[Any], send_id: int) -> str:
    taken = send_queue.claim(conn, send_id)
    if isinstance(taken, NotClaimed):
        return _not_claimed(conn, send_id, taken)
    logger.append_keys(send_id=send_id, channel=taken.channel)
    crashpoint("send.worker.after_claim")
    if taken.channel == "whatsapp":
        decision = window.check(conn, taken)
        if decision.send is None:
            # No attempt can succeed: review at once, never a retry (WhatsApp's 24-hour window).
            counters.incr("whatsapp", Metric.WINDOW_CLOSED)
            to_review(conn, taken, decision.review or "outside the customer-service window")
            return "review"
        if decision.template:
            counters.incr("whatsapp", Metric.WINDOW_TEMPLATES)
            logger.info("window closed: the re-engagement template goes instead", extra={"send_id": send_id})
        taken = decision.send
    try:
        sent = sender(taken.channel).send(taken)
    except ProviderTimeoutError as exc:
        return _unknown(conn, taken, f"timeout: {exc}")
    except ProviderCallError as exc:
        return _refused(conn, taken, exc)
    crashpoint("send.worker.after_provider")
    outcome = record_sent(conn, taken, sent.message_id, settled_by="worker")
    crashpoint("send.worker.after_complete")
    return outcome


def record_sent(
    conn: psycopg.Connection[Any],
    claim: SendClaim,
    message_id: str,
    *,
    settled_by: str,
    sent_at: datetime | None = None,
) -> str:
    """Fenced completion; a ledger conflict sends the row to review with a quarantine record."""
    try:
        done = send_queue.complete(conn, claim, message_id, settled_by=settled_by, sent_at=sent_at)
    except errors.UniqueViolation as exc:
        to_review(conn, claim, f"ledger refused provider message {message_id}: {exc.diag.constraint_name}")
        return "review"
    if not done:
        # The lease ran out and the reaper or reconciler took the row over: they decide now.
        counters.incr(PROVIDER, Metric.DUP_DATABASE)
        logger.warning("completion fenced out", extra={"send_id": claim.id, "provider_message_id": message_id})
        return "fenced_out"
    counters.incr(PROVIDER, Metric.EFFECTS)
    logger.info("send settled", extra={"send_id": claim.id, "outcome": "sent", "settled_by": settled_by})
    _watch_recipient(conn, claim)
    return "sent"


#: "The same recipient messaged more than once within an hour" (the LinkedIn sends incident's alarm).
RECIPIENT_REPEAT_WINDOW_SECONDS = 3600


def _watch_recipient(conn: psycopg.Connection[Any], claim: SendClaim) -> None:
    """Count a send that reached a recipient another send (another key) reached within the hour.

    Counted under the channel (``RecipientRepeats``, provider ``unipile`` or ``whatsapp``) and logged
    with the send ids, never the recipient. Only a count: the send happened; the alarm tells a person.
    """
    try:
        params = {"send_id": claim.id, "window_seconds": RECIPIENT_REPEAT_WINDOW_SECONDS}
        others = [int(r[0]) for r in conn.execute(q("send_recipient_repeats"), params).fetchall()]
    except psycopg.Error:
        logger.exception("recipient repeat check failed", extra={"send_id": claim.id})  # the send stands
        return
    if others:
        counters.incr(claim.channel, Metric.RECIPIENT_REPEATS)
        logger.warning(
            "recipient messaged more than once within an hour",
            extra={"send_id": claim.id, "channel": claim.channel, "other_send_ids": others},
        )


def to_review(conn: psycopg.Connection[Any], claim: SendClaim, reason: str) -> None:
    """Nobody can tell whether it went: a person decides, with the row kept in quarantine."""
    with conn.transaction():
        if send_queue.settle(conn, claim, "review", reason):
            store.quarantine(
                conn,
                provider=claim.channel,
                event_key=f"send:{claim.id}",
                external_id=str(claim.id),
                reason=reason,
                raw=json.dumps(
                    {"send_id": claim.id, "recipient": claim.recipient, "payload": claim.payload}, ensure_ascii=False
                ),
            )
    counters.incr(PROVIDER, Metric.QUARANTINED)
    logger.warning("send needs review", extra={"send_id": claim.id, "reason": reason})


def _not_claimed(conn: psycopg.Connection[Any], send_id: int, state: NotClaimed) -> str:
    if state.status == "pending" and not state.due:
        return "not_due"  # its own outbox record relays it when it is due
    if state.status == "pending":
        # Due, but its sender's pacing said not now: a record for the moment it may go.
        until = state.retry_at or (datetime.now(UTC) + timedelta(seconds=1))
        send_queue.defer(conn, send_id, until)
        return "deferred"
    counters.incr(PROVIDER, Metric.DUP_DATABASE)
    logger.info("duplicate stopped", extra={"layer": "send_claim", "send_id": send_id, "status": state.status})
    return f"duplicate:{state.status}"


def _unknown(conn: psycopg.Connection[Any], claim: SendClaim, reason: str) -> str:
    send_queue.settle(conn, claim, "unknown", reason)
    counters.incr(PROVIDER, Metric.SENDS_UNKNOWN)
    logger.warning("send outcome unknown", extra={"send_id": claim.id, "reason": reason})
    return "unknown"


def _refused(conn: psycopg.Connection[Any], claim: SendClaim, exc: ProviderCallError) -> str:
    now = datetime.now(UTC)
    if exc.status == 0:  # could not connect: the request never left
        backoff = min(2 ** max(claim.attempts, 1), MAX_BACKOFF_SECONDS)
        send_queue.release(conn, claim, until=now + timedelta(seconds=backoff), error=str(exc))
        counters.incr(PROVIDER, Metric.RETRIED)
        return "retry"
    if claim.channel == "whatsapp" and window.refused_outside_window(exc):
        counters.incr("whatsapp", Metric.WINDOW_CLOSED)
        to_review(conn, claim, f"Meta refused the message: outside the 24-hour customer-service window ({exc})")
        return "review"
    wait = sender(claim.channel).rate_limit(exc)
    if wait is not None:
        # The seed's warning handler left rows in processing: here the row is pending again,
        # due at the resume time, and the whole sender account waits until then.
        resume = now + timedelta(seconds=wait)
        send_queue.release(
            conn, claim, until=resume, error=f"rate limited: {exc}", count_attempt=False, pause_sender_until=resume
        )
        counters.incr(PROVIDER, Metric.RETRIED)
        logger.warning("provider warning: rescheduled", extra={"send_id": claim.id, "resume_at": resume.isoformat()})
        return "rescheduled"
    if exc.status >= 500:
        return _unknown(conn, claim, f"provider answered {exc.status}; the send may have happened")
    send_queue.settle(conn, claim, "failed", str(exc))
    logger.warning("send failed", extra={"send_id": claim.id, "status": exc.status})
    return "failed"
