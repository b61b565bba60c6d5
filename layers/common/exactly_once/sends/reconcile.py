"""Reapers of the send queue: expired leases -> unknown, unknown -> reconciled, outbox sweeps,
and the stuck-row gauge. Each is registered in ``reaper.REAPERS`` and takes ``(conn) -> int``.

Reconciliation asks the provider before anything is resent. Unipile: list the chat's recent
messages and match the text at or after the call -> sent (the ledger records it) or pending; a
send that started a chat lists the account's chats with that person first, then their messages.
WhatsApp has no list API: the delivery policy decides (at_most_once -> review, a person decides;
at_least_once -> pending, a resend).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from exactly_once.core.crash import crashpoint
from exactly_once.core.errors import ProviderCallError, ProviderTimeoutError
from exactly_once.core.outbound_http import MAX_RETRY_AFTER_SECONDS
from exactly_once.core.queries import q
from exactly_once.core.settings import env_int
from exactly_once.core.telemetry import Metric, counters, logger
from exactly_once.sends import queue as send_queue
from exactly_once.sends.channels import Found, NotFound, sender
from exactly_once.sends.delivery import PROVIDER, record_sent, to_review
from exactly_once.sends.queue import SendClaim

BATCH = 100  # reconciliations per run at most
# The provider listing's client: 3 tries (retries=2), each a 2 s connect and the read timeout.
LISTING_TRIES = 3
CONNECT_SECONDS = 2.0


def expire_leases(conn: psycopg.Connection[Any]) -> int:
    """processing past the lease -> unknown (never pending: the send may have happened)."""
    rows = conn.execute(q("send_expire_leases"), {"limit": 500}).fetchall()
    if rows:
        counters.incr(PROVIDER, Metric.SENDS_UNKNOWN, len(rows))
        logger.warning("send leases expired", extra={"send_ids": [int(r[0]) for r in rows]})
    return len(rows)


def reconcile_budget_ms() -> int:
    """The time a run must have left to start one more reconciliation: the listing at its worst
    (every try timing out, the capped Retry-After waits between them), plus the time kept for
    the reapers after this one (SEND_RECONCILE_RESERVE_SECONDS: the outbox sweep, the gauges)."""
    read = float(env_int("SEND_PROVIDER_TIMEOUT_SECONDS", 10))
    listing = LISTING_TRIES * (CONNECT_SECONDS + read) + (LISTING_TRIES - 1) * MAX_RETRY_AFTER_SECONDS
    return int((listing + env_int("SEND_RECONCILE_RESERVE_SECONDS", 10)) * 1000)


def reconcile_unknown(conn: psycopg.Connection[Any], *, remaining_ms: Callable[[], int] | None = None) -> int:
    """Settle unknown rows older than SEND_RECONCILE_AFTER_SECONDS (a hung request may still land).

    One row at a time, up to BATCH: with ``remaining_ms`` (the invocation's remaining time), no
    row is taken once the run could no longer finish its listing and leave the reserve for the
    reapers after this one; the rows left wait for the next run, their attempts not counted.
    """
    token = str(uuid.uuid4())
    after_seconds = env_int("SEND_RECONCILE_AFTER_SECONDS", 60)
    budget_ms = reconcile_budget_ms() if remaining_ms is not None else 0
    seen: list[int] = []
    relay: list[int] = []
    while len(seen) < BATCH:
        if remaining_ms is not None and remaining_ms() < budget_ms:
            logger.info(
                "send reconciliation stops: the time left is kept for the reapers after it",
                extra={"reconciled": len(seen), "remaining_ms": remaining_ms(), "budget_ms": budget_ms},
            )
            break
        row = conn.execute(
            q("send_take_unknown"), {"token": token, "after_seconds": after_seconds, "seen": seen, "limit": 1}
        ).fetchone()
        if row is None:
            break
        claim = SendClaim.from_row(row, token)
        seen.append(claim.id)
        outcome = _reconcile(conn, claim, reconcile_attempts=int(row[9]))
        logger.info("send reconciled", extra={"send_id": claim.id, "outcome": outcome})
        if outcome == "pending":
            relay.append(claim.id)
    if relay:
        send_queue.relay_outbox(conn, relay)
    return len(seen)


def _reconcile(conn: psycopg.Connection[Any], claim: SendClaim, *, reconcile_attempts: int) -> str:
    try:
        found = sender(claim.channel).find(claim)
    except (ProviderCallError, ProviderTimeoutError) as exc:
        if reconcile_attempts >= env_int("SEND_RECONCILE_MAX_ATTEMPTS", 5):
            to_review(conn, claim, f"reconciliation failed {reconcile_attempts} times: {exc}")
            return "review"
        return "unknown"  # stays unknown; the next run asks again
    crashpoint("send.reconcile.after_lookup")
    if isinstance(found, Found):
        # The same text sent by another row just before (a repeated step) is in the ledger already.
        known = {
            str(r[0])
            for r in conn.execute(
                q("send_ledger_known"), {"channel": claim.channel, "ids": [c[0] for c in found.candidates]}
            )
        }
        fresh = [c for c in found.candidates if c[0] not in known]
        if fresh:
            message_id, sent_at = fresh[0]
            return record_sent(conn, claim, message_id, settled_by="reconciliation", sent_at=sent_at)
        found = NotFound()
    if isinstance(found, NotFound):
        return _pending_again(conn, claim, "reconciliation: the provider does not have the message")
    if claim.policy == "at_least_once":
        return _pending_again(conn, claim, "outcome unknowable; at_least_once policy resends")
    to_review(conn, claim, "outcome unknown and the provider cannot list sent messages (at_most_once)")
    return "review"


def _pending_again(conn: psycopg.Connection[Any], claim: SendClaim, reason: str) -> str:
    released = send_queue.release(conn, claim, until=datetime.now(UTC), error=reason)
    if released is None:
        return "fenced_out"
    counters.incr(PROVIDER, Metric.RETRIED)
    return released[0]  # pending, or failed once attempts run out


def sweep_outbox(conn: psycopg.Connection[Any]) -> int:
    """Relay the outbox records the after-commit relay missed (and re-queue lost pending rows)."""
    requeued = conn.execute(
        q("send_requeue_stale"), {"stale_seconds": env_int("SEND_STALE_PENDING_SECONDS", 900), "limit": 500}
    ).fetchall()
    relayed = send_queue.relay_outbox(conn, None, grace_seconds=env_int("SEND_RELAY_GRACE_SECONDS", 10))
    if requeued or relayed:
        logger.info("send outbox swept", extra={"relayed": relayed, "requeued": len(requeued)})
    return relayed


def stuck_rows(conn: psycopg.Connection[Any]) -> int:
    """Emit StuckRows (rows processing or unknown for more than 5 minutes) every run, zero included."""
    row = conn.execute(q("send_stuck"), {"stuck_seconds": env_int("SEND_STUCK_SECONDS", 300)}).fetchone()
    stuck, unknown = (int(row[0]), int(row[1])) if row else (0, 0)
    counters.incr(PROVIDER, Metric.STUCK_ROWS, stuck)
    if stuck:
        logger.warning("send rows stuck", extra={"stuck": stuck, "unknown": unknown})
    return 0  # a gauge, not rows handled
