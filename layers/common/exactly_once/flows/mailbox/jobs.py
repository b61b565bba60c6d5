"""Per-user mailbox jobs (the mailbox-jobs incident): one job identity, at most one pending job per user.

The scheduler and the manual trigger derive a job's id with the same function,
``job_id(user_id, slot)``, where the slot is the scheduler's tick (``MAILBOX_SLOT_SECONDS``,
matching the EventBridge rate) that contains the moment of the request. The store
decides who wins: ``mailbox_job_create`` is one ``INSERT .. ON CONFLICT DO NOTHING``
against the job id and a partial unique index on pending jobs (scheduled, queued,
running). There is no check-then-enqueue: a check is only read afterwards, to tell
the loser why it lost.

Exactly one pending job per user: a manual trigger while a job is queued or running
is refused (409), not queued behind it.

A job row is written first (status ``scheduled``: the outbox) and then sent to the
JobsQueue (SQS FIFO, group = the user, dedup id = the job id) and marked ``queued``.
If the send fails, the row stays ``scheduled`` and the next scheduler tick relays it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg

from exactly_once.core.queries import q
from exactly_once.core.settings import env_int
from exactly_once.core.telemetry import logger

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

PROVIDER = "mailbox"  # the telemetry dimension and event_log provider of this flow
PENDING = ("scheduled", "queued", "running")
_SAFE_USER = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def slot_seconds() -> int:
    return env_int("MAILBOX_SLOT_SECONDS", 60)


def slot_of(at: datetime, seconds: int | None = None) -> datetime:
    """The schedule slot that contains ``at``: its start, in UTC."""
    width = seconds or slot_seconds()
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % width, tz=UTC)


def user_key(user_id: str) -> str:
    """The user as it appears in job ids and FIFO groups (SQS: <= 128 chars, a restricted alphabet)."""
    if _SAFE_USER.fullmatch(user_id):  # not match: "$" also matches before a final newline
        return user_id
    return "h" + hashlib.sha256(user_id.encode()).hexdigest()[:32]


def job_id(user_id: str, slot: datetime, rerun: int = 0) -> str:
    """THE job identity: the scheduler and the manual trigger both call this, never anything else.

    ``rerun``: a trigger after the slot's job finished (nothing pending) makes the slot's next job,
    ``-r<n>``; two such triggers at once compute the same id, so the store still makes one.
    """
    stamp = slot.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"mbx-{user_key(user_id)}-{stamp}" + (f"-r{rerun}" if rerun else "")


@dataclass(frozen=True)
class JobStatus:
    """A user's job state, as the trigger's 409 and ``GET /jobs/{user_id}`` report it."""

    user_id: str
    configured: bool
    enabled: bool
    job_id: str | None  # the pending job, if any
    status: str | None
    since: datetime | None
    last_check_time: datetime | None
    slot_job_id: str | None = None  # the job of the asked-about slot, when it exists (maybe finished)
    slot_status: str | None = None

    @property
    def pending(self) -> bool:
        return self.status in PENDING

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "has_running_job": self.status == "running",
            "has_scheduled_job": self.status == "scheduled",
            "has_queued_job": self.status == "queued",
            "job_id": self.job_id,
            "status": self.status,
            "since": self.since.isoformat() if self.since else None,
            "last_check_time": self.last_check_time.isoformat() if self.last_check_time else None,
        }


@dataclass(frozen=True)
class Created:
    job_id: str
    user_id: str
    slot: datetime


def status(conn: psycopg.Connection[Any], user_id: str, slot_job: str | None = None) -> JobStatus:
    row = conn.execute(q("mailbox_job_status"), {"user_id": user_id, "job_id": slot_job}).fetchone()
    if row is None:  # the query selects from a one-row subquery; guard for the type checker
        raise RuntimeError("status query returned no row")
    return JobStatus(
        user_id=user_id,
        configured=bool(row[0]),
        enabled=bool(row[1]),
        job_id=row[2],
        status=row[3],
        since=row[4],
        last_check_time=row[7],
        slot_job_id=row[5],
        slot_status=row[6],
    )


def create(conn: psycopg.Connection[Any], user_id: str, slot: datetime, origin: str, rerun: int = 0) -> Created | None:
    """Record the job of (user, slot), or None when the store refused it (a pending job, the slot's job
    already exists, or the user is not configured and enabled). One statement, so atomic on its own."""
    jid = job_id(user_id, slot, rerun)
    row = conn.execute(
        q("mailbox_job_create"), {"job_id": jid, "user_id": user_id, "slot": slot, "origin": origin}
    ).fetchone()
    return Created(jid, user_id, slot) if row else None


def jobs_in_slot(conn: psycopg.Connection[Any], user_id: str, slot: datetime) -> int:
    row = conn.execute(q("mailbox_jobs_in_slot"), {"user_id": user_id, "slot": slot}).fetchone()
    return int(row[0]) if row else 0


def message(job: Created) -> dict[str, str]:
    """The JobsQueue message of a job: FIFO group = the user, dedup id = the job id."""
    return {
        "MessageBody": json.dumps({"job_id": job.job_id, "user_id": job.user_id}, separators=(",", ":")),
        "MessageGroupId": f"mbx-{user_key(job.user_id)}",
        "MessageDeduplicationId": job.job_id,
    }


def send(conn: psycopg.Connection[Any], sqs: SQSClient, queue_url: str, job: Created) -> bool:
    """Put a recorded job on the JobsQueue and mark it queued; False leaves it for the relay."""
    try:
        sqs.send_message(QueueUrl=queue_url, **message(job))  # type: ignore[arg-type]
    except Exception:
        logger.exception("job not sent; the scheduler relays it", extra={"job_id": job.job_id})
        return False
    try:
        conn.execute(q("mailbox_job_mark_queued"), {"job_id": job.job_id, "queue_ttl": queue_ttl_seconds()})
    except psycopg.OperationalError:
        # The job is recorded and on the queue; the worker claims a 'scheduled' job as well, and a
        # relay of it is stopped by the FIFO dedup id or the claim. Not worth failing the request.
        logger.warning("job sent but not marked queued", extra={"job_id": job.job_id})
    return True


def relay_unsent(conn: psycopg.Connection[Any], sqs: SQSClient, queue_url: str, grace_seconds: int = 30) -> int:
    """Send jobs left 'scheduled' (a failed send, a crash after the insert). FIFO dedup = job id."""
    rows = conn.execute(q("mailbox_jobs_unrelayed"), {"grace": grace_seconds, "limit": 100}).fetchall()
    sent = 0
    for jid, user_id in rows:
        # The slot is part of the id already; the message needs only the id and the user.
        sent += send(conn, sqs, queue_url, Created(jid, user_id, datetime.now(UTC)))
    return sent


def queue_ttl_seconds() -> int:
    """How long a queued job may wait to be claimed before the reaper expires it."""
    return env_int("MAILBOX_QUEUE_TTL_SECONDS", 3600)


def expire_stale(conn: psycopg.Connection[Any]) -> int:
    """Reaper (REAPERS["mailbox_jobs"]): expire jobs whose lease ran out, so the next slot proceeds."""
    total = 0
    while True:
        with conn.transaction():
            rows = conn.execute(q("mailbox_jobs_expire"), {"limit": 500}).fetchall()
        for jid, user_id in rows:
            logger.warning("mailbox job expired", extra={"job_id": jid, "user_id": user_id})
        total += len(rows)
        if len(rows) < 500:
            return total
