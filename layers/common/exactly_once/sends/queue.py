"""The outbound send queue (seed 003): enqueue with an idempotency key, relay through an outbox,
claim atomically, complete under a fence, and say "unknown" when the outcome is not known.

Life of a row::

    enqueue (row + outbox record, one statement, in the caller's transaction)
      -> relay after commit (SQS FIFO, group = sender account); the sweeper relays what it missed
      -> claim (ONE statement: pending and due -> processing, token, attempts + 1, pacing taken)
      -> provider call -> complete (fenced: sent + ledger row, one statement)
                       -> release (fenced: pending at the resume time + outbox record; warning, rate limit)
                       -> settle failed (permanent answer) | unknown (timeout, 5xx) | review
    unknown -> reconciliation (send_reconcile) -> sent | pending | review

Every transition is a single statement (or one transaction) on Postgres; SQS only carries
"look at row N", so a lost, duplicated or reordered message cannot cause a second send.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg.types.json import Jsonb

from exactly_once.core import aws, db
from exactly_once.core.crash import crashpoint
from exactly_once.core.errors import ConfigurationError, ExactlyOnceError
from exactly_once.core.fifo import group_id
from exactly_once.core.queries import q
from exactly_once.core.settings import env_int
from exactly_once.core.telemetry import logger
from exactly_once.sends import pacing
from exactly_once.sends.request import SendRequest, default_policy

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SQS_BATCH = 10


class IdempotencyConflictError(ExactlyOnceError):
    """The idempotency key exists with a different payload."""

    def __init__(self, key: str, existing_id: int) -> None:
        super().__init__(f"idempotency key {key!r} is already used by send {existing_id} with a different payload")
        self.key = key
        self.existing_id = existing_id


@dataclass(frozen=True)
class Enqueued:
    id: int
    created: bool
    status: str


@dataclass(frozen=True)
class SendClaim:
    """A row this worker owns until it completes, releases or settles it (fenced on ``token``)."""

    id: int
    token: str
    channel: str
    sender_account: str
    recipient: str
    payload: dict[str, Any]
    policy: str
    attempts: int
    max_attempts: int
    call_started_at: datetime

    @classmethod
    def from_row(cls, row: Sequence[Any], token: str) -> SendClaim:
        """From the columns send_claim and send_take_unknown return, in their order."""
        return cls(
            id=int(row[0]),
            token=token,
            channel=str(row[1]),
            sender_account=str(row[2]),
            recipient=str(row[3]),
            payload=dict(row[4]),
            policy=str(row[5]),
            attempts=int(row[6]),
            max_attempts=int(row[7]),
            call_started_at=row[8] or datetime.now(UTC),
        )


@dataclass(frozen=True)
class NotClaimed:
    """Why a claim did not happen: the row's status, and when it may go if it is held back."""

    status: str  # pending | processing | sent | failed | unknown | review | missing
    due: bool
    retry_at: datetime | None  # pacing or schedule: when the row may be claimed


# -- enqueue and relay ---------------------------------------------------------------------


def enqueue(conn: psycopg.Connection[Any], request: SendRequest) -> Enqueued:
    """Queue a send, or find the one already queued under the key (joins the caller's transaction).

    Raises IdempotencyConflictError when the key exists with a different payload. The caller
    calls ``relay([id])`` after its transaction commits; the sweeper relays it otherwise.
    """
    request.validate()
    row = conn.execute(
        q("send_enqueue"),
        {
            "key": request.idempotency_key,
            "channel": request.channel,
            "sender_account": request.sender_account,
            "recipient": request.recipient,
            "payload": Jsonb(request.payload),
            "payload_hash": request.payload_hash,
            "policy": request.policy or default_policy(request.channel),
            "scheduled_for": request.scheduled_for,
        },
    ).fetchone()
    if row is None:  # RETURNING always yields a row; guard for the type checker
        raise RuntimeError("statement returned no row")
    send_id, created, status, stored_hash = int(row[0]), bool(row[1]), str(row[2]), str(row[3])
    if not created and stored_hash != request.payload_hash:
        raise IdempotencyConflictError(request.idempotency_key, send_id)
    return Enqueued(send_id, created, status)


def relay(ids: Sequence[int]) -> int:
    """After commit: put these rows' waiting outbox records on the SendQueue; return how many went."""
    if not ids:
        return 0
    conn = db.connection()
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        # Inside the enqueueing transaction a worker could receive the message before the row
        # is visible, and the record would be marked relayed: refuse, loudly.
        raise RuntimeError("send_queue.relay() runs after the enqueueing transaction commits")
    return relay_outbox(conn, list(ids))


def relay_committed(ids: Sequence[int], what: str) -> int:
    """``relay`` for a caller whose transaction has committed its effect: a failure is logged, not raised.

    Raising could not help: a retry of the caller's event stops at its committed effect. The outbox
    sweeper (``reconcile.sweep_outbox``) relays what this misses. Returns how many went.
    """
    if not ids:
        return 0
    try:
        return relay(ids)
    except (BotoCoreError, ClientError, ConfigurationError, psycopg.Error):
        logger.exception(f"{what} relay failed; the sweeper will relay it", extra={"send_ids": list(ids)})
        return 0


def relay_outbox(
    conn: psycopg.Connection[Any],
    ids: list[int] | None,
    *,
    grace_seconds: int = 0,
    limit: int = 500,
    client: SQSClient | None = None,
) -> int:
    """Relay outbox records (of ``ids``, or every one older than ``grace_seconds`` when None).

    A crash between SendMessageBatch and the mark relays the record again later: a duplicate
    message, which the claim stops. The records stay locked (SKIP LOCKED) until marked.
    """
    sent = 0
    with conn.transaction():
        rows = conn.execute(
            q("send_relay_take"), {"ids": ids, "grace_seconds": grace_seconds, "limit": limit}
        ).fetchall()
        done: list[int] = []
        if rows:
            queue_url, sqs = send_queue_url(), client or aws.sqs()
        for start in range(0, len(rows), SQS_BATCH):
            chunk = rows[start : start + SQS_BATCH]
            response = sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": json.dumps({"send_id": int(send_id), "outbox_id": int(outbox_id)}),
                        "MessageGroupId": group_id(f"{channel}:{sender}"),
                        # The row id plus its outbox record: the after-commit relay and the sweeper
                        # share it (FIFO drops the copy), while a rescheduled row gets a new one.
                        "MessageDeduplicationId": f"send-{send_id}-{outbox_id}",
                    }
                    for i, (outbox_id, send_id, channel, sender) in enumerate(chunk)
                ],
            )
            failed = {int(entry["Id"]) for entry in response.get("Failed", [])}
            done.extend(int(row[0]) for i, row in enumerate(chunk) if i not in failed)
            if failed:
                logger.warning("SQS refused outbox records", extra={"failed": len(failed)})
        crashpoint("send.relay.after_sqs")
        if done:
            conn.execute(q("send_relay_mark"), {"outbox_ids": done})
        sent = len(done)
    return sent


def send_queue_url() -> str:
    import os

    url = os.environ.get("SEND_QUEUE_URL")
    if not url:
        raise ConfigurationError("environment variable SEND_QUEUE_URL is required to relay sends")
    return url


# -- claim and completion ------------------------------------------------------------------


def lease_seconds() -> int:
    """Longer than the worker's timeout: a processing row past its lease has no live worker."""
    return env_int("SEND_LEASE_SECONDS", 90)


def claim(conn: psycopg.Connection[Any], send_id: int) -> SendClaim | NotClaimed:
    """Take the row if it is pending, due and its sender's pacing allows a send now (one statement)."""
    token = str(uuid.uuid4())
    row = conn.execute(
        q("send_claim"),
        {
            "id": send_id,
            "token": token,
            "lease_seconds": lease_seconds(),
            "pacing": json.dumps(pacing.all_defaults()),
        },
    ).fetchone()
    if row is not None:
        return SendClaim.from_row(row, token)
    state = conn.execute(q("send_state"), {"id": send_id}).fetchone()
    if state is None:
        return NotClaimed("missing", False, None)
    status, due, scheduled_for, pacing_next = str(state[0]), bool(state[1]), state[2], state[3]
    retry_at = scheduled_for if not due else pacing_next
    return NotClaimed(status, due, retry_at if status == "pending" else None)


def defer(conn: psycopg.Connection[Any], send_id: int, until: datetime) -> int | None:
    """Pacing held a due row back: schedule it for ``until`` at the earliest, with an outbox record.

    The statement reads the sender's pacing itself and only ever moves the row's time forward:
    a row rescheduled later in between keeps its time and gets no new record. Returns the new
    record's id, or None when nothing moved (the row's time was already as late, or it left pending).
    """
    row = conn.execute(q("send_defer"), {"id": send_id, "until": until}).fetchone()
    return int(row[0]) if row else None


def complete(
    conn: psycopg.Connection[Any],
    claim: SendClaim,
    provider_message_id: str,
    *,
    settled_by: str = "worker",
    sent_at: datetime | None = None,
) -> bool:
    """Fenced: sent, with the ledger row. False when the claim was lost (another token owns the row).

    Raises psycopg.errors.UniqueViolation when the ledger already holds this row or this
    provider message id (the statement is rolled back whole).
    """
    row = conn.execute(
        q("send_complete"),
        {
            "id": claim.id,
            "token": claim.token,
            "provider_message_id": provider_message_id,
            "settled_by": settled_by,
            "sent_at": sent_at,
        },
    ).fetchone()
    return bool(row and row[0])


def release(
    conn: psycopg.Connection[Any],
    claim: SendClaim,
    *,
    until: datetime,
    error: str,
    count_attempt: bool = True,
    pause_sender_until: datetime | None = None,
) -> tuple[str, int | None] | None:
    """Fenced: back to pending at ``until`` (or failed once counted attempts run out).

    Returns (status, outbox id) or None when the claim was lost.
    """
    row = conn.execute(
        q("send_release"),
        {
            "id": claim.id,
            "token": claim.token,
            "until": until,
            "error": error[:2000],
            "count_attempt": count_attempt,
            "pause_until": pause_sender_until,
        },
    ).fetchone()
    return (str(row[0]), None if row[1] is None else int(row[1])) if row else None


def settle(conn: psycopg.Connection[Any], claim: SendClaim, status: str, error: str) -> bool:
    """Fenced: failed, unknown or review, with the reason."""
    if status not in ("failed", "unknown", "review"):
        raise ValueError(f"settle() does not move a row to {status}")
    row = conn.execute(
        q("send_settle"), {"id": claim.id, "token": claim.token, "status": status, "error": error[:2000]}
    ).fetchone()
    return row is not None


def resolve_review(
    conn: psycopg.Connection[Any],
    send_id: int,
    decision: str,
    *,
    note: str,
    by: str,
    provider_message_id: str | None = None,
) -> str | None:
    """A person settles a send in ``review`` after checking with the provider.

    ``sent`` (it is there: give its message id; the ledger records it, settled_by operator),
    ``resend`` (it is not: pending again, relayed by the sweeper or ``relay([id])``), or
    ``drop`` (failed). Returns the new status, or None when the row is not in review.
    """
    if decision not in ("sent", "resend", "drop"):
        raise ValueError("decision must be sent, resend or drop")
    if decision == "sent" and not provider_message_id:
        raise ValueError("a send resolved as sent needs the provider's message id")
    row = conn.execute(
        q("send_resolve"),
        {
            "id": send_id,
            "decision": decision,
            "note": note[:2000],
            "by": by,
            "provider_message_id": provider_message_id,
        },
    ).fetchone()
    return str(row[0]) if row else None


def set_pacing(
    conn: psycopg.Connection[Any],
    channel: str,
    sender_account: str,
    rule: pacing.PacingRule | None = None,
    **changes: Any,
) -> None:
    """Configure one sender account's pacing: ``rule``, or the channel's defaults with ``changes``
    (``daily_cap=100, min_spacing_seconds=30``). Rows not configured take the channel's defaults."""
    chosen = rule or pacing.rule_from(changes, pacing.defaults(channel))
    conn.execute(q("send_pacing_set"), {"channel": channel, "sender_account": sender_account, **chosen.params()})


def pacing_next(conn: psycopg.Connection[Any], channel: str, sender_account: str) -> datetime | None:
    """When the account may send next (now if it may now; None if its rules allow no day at all)."""
    row = conn.execute(q("send_pacing_next"), {"channel": channel, "sender_account": sender_account}).fetchone()
    return row[0] if row else None


def get(conn: psycopg.Connection[Any], send_id: int) -> dict[str, Any] | None:
    cur = conn.execute(q("send_get"), {"id": send_id})
    row = cur.fetchone()
    if row is None:
        return None
    names = [c.name for c in cur.description or []]
    return dict(zip(names, row, strict=True))


def parse_message(body: str) -> int:
    """The row id a SendQueue message points at."""
    data = json.loads(body)
    return int(data["send_id"])


def ids_of(items: Iterable[Enqueued]) -> list[int]:
    """The rows to relay after commit: those this transaction created."""
    return [item.id for item in items if item.created]
