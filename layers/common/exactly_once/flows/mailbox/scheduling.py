"""The two ways a mailbox job is born, the scheduler tick and the manual trigger, on one code path.

Both call ``mailbox_jobs.create`` with ``mailbox_jobs.job_id(user, slot)``; the store
refuses a second pending job for a user, so a tick racing ten triggers makes one job.

A trigger is refused (409) only while a job is pending: after the slot's job finished, it makes
the slot's next job (``job_id(user, slot, rerun=n)``), since mail may have arrived after that job
read the mailbox. A tick isolates its users: one user's failure is logged and counted
(``MailboxScheduleFailures``) and the others are still scheduled.

A refused trigger raises the flow's own errors (``UnknownUserError``, ``JobConflictError``); the
job trigger function decides how they are answered over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

from exactly_once.core.crash import crashpoint
from exactly_once.core.errors import ExactlyOnceError
from exactly_once.core.queries import q
from exactly_once.core.settings import env_int
from exactly_once.core.telemetry import Metric, counters, logger
from exactly_once.flows.mailbox import jobs as mailbox_jobs
from exactly_once.flows.mailbox.jobs import PROVIDER, Created, JobStatus

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


DUE_PER_TICK = 1000  # due users a tick creates jobs for (the next tick takes the rest)


class UnknownUserError(ExactlyOnceError):
    """No mailbox configuration for this user."""

    code = "unknown_user"

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.message = f"no mailbox configuration for user {user_id}"
        super().__init__(self.message)


class JobConflictError(ExactlyOnceError):
    """The store refused a new job: ``code`` says why (job_pending, mailbox_disabled),
    ``job_status`` where the user's jobs stand."""

    def __init__(self, code: str, message: str, job_status: JobStatus) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.job_status = job_status


@dataclass
class TickResult:
    slot: datetime
    enqueued: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # user -> pending job status
    failed: dict[str, str] = field(default_factory=dict)  # user -> the error that kept their job from being made
    relayed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot.isoformat(),
            "enqueued": len(self.enqueued),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "relayed": self.relayed,
        }


def trigger(conn: psycopg.Connection[Any], sqs: SQSClient, queue_url: str, user_id: str, now: datetime) -> Created:
    """The manual trigger: a job for the current slot, or JobConflictError / UnknownUserError."""
    slot = mailbox_jobs.slot_of(now)
    rerun = 0
    for _ in range(3):
        job = mailbox_jobs.create(conn, user_id, slot, "trigger", rerun)
        if job is not None:
            crashpoint("mailbox.trigger_after_insert")
            mailbox_jobs.send(conn, sqs, queue_url, job)
            counters.incr(PROVIDER, Metric.ACCEPTED)
            logger.info("mailbox job created", extra={"user_id": user_id, "job_id": job.job_id, "origin": "trigger"})
            return job
        current = mailbox_jobs.status(conn, user_id, mailbox_jobs.job_id(user_id, slot))
        if not current.configured:
            raise UnknownUserError(user_id)
        if not current.enabled:
            raise JobConflictError("mailbox_disabled", "mailbox processing is disabled for this user", current)
        if current.pending:
            counters.incr(PROVIDER, Metric.DUP_DATABASE)
            logger.info("mailbox job refused: one pending", extra={"user_id": user_id, **current.as_dict()})
            raise JobConflictError("job_pending", "a mailbox job is already pending for this user", current)
        # Nothing pending. Either the slot's job (or its last re-run) finished: this trigger makes the
        # slot's next job, since mail may have come after that job read the mailbox. Or the pending job
        # that refused us finished between the insert and the read: the same, try again.
        rerun = mailbox_jobs.jobs_in_slot(conn, user_id, slot)
    raise JobConflictError("job_pending", "a mailbox job is already pending for this user", current)


def tick(conn: psycopg.Connection[Any], sqs: SQSClient, queue_url: str, now: datetime) -> TickResult:
    """The scheduler: relay unsent jobs, then one job per due user without a pending job."""
    result = TickResult(slot=mailbox_jobs.slot_of(now))
    # A job left 'scheduled' longer than the grace was not sent (or its sender died): send it now.
    grace = env_int("MAILBOX_RELAY_GRACE_SECONDS", 30)
    result.relayed = mailbox_jobs.relay_unsent(conn, sqs, queue_url, grace_seconds=grace)
    # Up to DUE_PER_TICK due users without a pending job, then (apart) the users with one: a
    # pending job never takes a due user's place in the limit.
    due = conn.execute(q("mailbox_users_due"), {"slot": result.slot, "limit": DUE_PER_TICK}).fetchall()
    for user_id, _interval, pending_job, pending_status, pending_since in due:
        try:
            _schedule_user(conn, sqs, queue_url, result, user_id, pending_job, pending_status, pending_since)
        except psycopg.OperationalError:
            raise  # the database is gone for every user: the tick fails (Lambda Errors) and EventBridge's next runs
        except Exception as exc:  # one user's failure must not stop the tick for the others
            result.failed[user_id] = f"{type(exc).__name__}: {exc}"[:500]
            counters.incr(PROVIDER, Metric.SCHEDULE_FAILURES)
            logger.exception("mailbox job not scheduled for this user", extra={"user_id": user_id})
    logger.info("scheduler tick", extra=result.as_dict())
    return result


def _schedule_user(
    conn: psycopg.Connection[Any],
    sqs: SQSClient,
    queue_url: str,
    result: TickResult,
    user_id: str,
    pending_job: str | None,
    pending_status: str | None,
    pending_since: datetime | None,
) -> None:
    """One due user's job (or why not), into ``result``."""
    if pending_job is not None:
        result.skipped[user_id] = str(pending_status)
        logger.info(
            "skipping user: mailbox job already pending",
            extra={"user_id": user_id, "job_id": pending_job, "status": pending_status, "since": pending_since},
        )
        return
    job = mailbox_jobs.create(conn, user_id, result.slot, "schedule")
    if job is None:  # a trigger (or another tick) won the race since the read
        current = mailbox_jobs.status(conn, user_id)
        result.skipped[user_id] = str(current.status)
        counters.incr(PROVIDER, Metric.DUP_DATABASE)
        logger.info("skipping user: lost the race", extra={"user_id": user_id, **current.as_dict()})
        return
    crashpoint("mailbox.schedule_after_insert")
    mailbox_jobs.send(conn, sqs, queue_url, job)
    result.enqueued.append(job.job_id)
    counters.incr(PROVIDER, Metric.ACCEPTED)
