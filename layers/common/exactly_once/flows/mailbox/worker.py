"""The mailbox job worker: claim, read the mailbox once, process each mail once, finish fenced.

1. Claim: ``queued -> running`` with a fresh claim token and a lease longer than the
   function's timeout, so a live worker is never taken over (one IMAP connection per user).
   A running job whose lease ran out (its worker crashed) may be taken over by the retry.
2. Read: one IMAP connection (``imap.fetch_since``), closed before any effect: the headers of the
   mails since the last check, the whole message of those not processed yet.
3. Process (``mails.process_mails``): per mail, one fenced transaction in which ``processed_mails``,
   the configured processor's effect (``MAILBOX_PROCESSOR``) and the ``event_log`` row commit together;
   a processor error is counted per mail and retried by the next jobs, then quarantined.
4. Finish: fenced on the token; ``last_check_time`` moves forward only (GREATEST).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from typing import Any

import psycopg
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from exactly_once.core import aws, db, store
from exactly_once.core.crash import crashpoint
from exactly_once.core.errors import ConfigurationError
from exactly_once.core.queries import q
from exactly_once.core.secrets import imap_password
from exactly_once.core.settings import env_flag, env_int
from exactly_once.core.telemetry import Metric, counters, flushes_metrics, logger
from exactly_once.flows.mailbox import mails as mailbox_mails
from exactly_once.flows.mailbox.imap import ImapAccount, ImapReadError, fetch_since
from exactly_once.flows.mailbox.jobs import PROVIDER, queue_ttl_seconds
from exactly_once.flows.mailbox.mails import ClaimLostError
from exactly_once.flows.mailbox.processors import MailProcessor, RecordOnly, load_processor

__all__ = ["ClaimLostError", "JobRetryError", "MailboxJobWorker", "run_job"]


class JobRetryError(Exception):
    """The attempt failed and the job went back to queued: the queue retries the message."""


def job_timeout_seconds() -> int:
    return env_int("MAILBOX_JOB_TIMEOUT_SECONDS", 600)


def lease_seconds() -> int:
    # Longer than the function's timeout: Lambda stops a worker before its lease can run out.
    return job_timeout_seconds() + env_int("MAILBOX_LEASE_GRACE_SECONDS", 60)


def run_job(conn: psycopg.Connection[Any], job_id: str, processor: MailProcessor | None = None) -> str:
    """Run one job to an outcome: succeeded, busy, already_<status>, unknown_job, failed, claim_lost.

    ``processor`` does each new mail's work (default: ``RecordOnly``, the mail is recorded only).
    """
    token = uuid.uuid4()
    with conn.transaction():
        claimed = conn.execute(q("mailbox_job_claim"), {"job_id": job_id, "token": token, "lease": lease_seconds()})
        row = claimed.fetchone()
    if row is None:
        return _not_claimed(conn, job_id)
    # The check starts at the claim (the database's clock): mails arriving during it are caught next time.
    user_id, attempts, checked_at = row[0], row[1], row[2]
    logger.append_keys(job_id=job_id, user_id=user_id)
    crashpoint("mailbox.after_claim")
    config = conn.execute(q("mailbox_config_get"), {"user_id": user_id}).fetchone()
    if config is None:  # mailbox_jobs.user_id references mailbox_configs; guard for the type checker
        raise RuntimeError(f"no mailbox configuration for job {job_id}")
    try:
        account = ImapAccount(
            host=config[1],
            port=int(config[2]),
            username=config[3],
            password=imap_password(config[5]),
            use_ssl=bool(config[4]),
            folder=config[6],
            timeout=float(env_int("MAILBOX_IMAP_TIMEOUT_SECONDS", 30)),
            allow_plaintext=env_flag("MAILBOX_ALLOW_PLAINTEXT_IMAP"),
        )
        mails = fetch_since(
            account,
            config[7],
            first_lookback_days=env_int("MAILBOX_FIRST_LOOKBACK_DAYS", 7),
            known=lambda ids: mailbox_mails.known(conn, user_id, list(ids)),
        )
        crashpoint("mailbox.after_fetch")
        todo = mails + mailbox_mails.retrying(conn, user_id, mails)
        tally = mailbox_mails.process_mails(conn, job_id, token, user_id, todo, processor or RecordOnly())
        processed = tally.processed
        crashpoint("mailbox.before_finish")
        with conn.transaction():
            done = conn.execute(
                q("mailbox_job_finish"),
                {
                    "job_id": job_id,
                    "token": token,
                    "seen": len(mails),
                    "processed": processed,
                    "checked_at": checked_at,
                },
            ).fetchone()
        if done is None:
            raise ClaimLostError(job_id)
        crashpoint("mailbox.after_finish")
    except ClaimLostError:
        logger.warning("mailbox job claim lost; stopping", extra={"attempt": attempts})
        return "claim_lost"
    except ImapReadError as exc:
        return _release(conn, job_id, token, str(exc))
    except ConfigurationError as exc:
        # The user's configuration is refused (plaintext IMAP, a secret name outside the allowed prefix):
        # a retry would fail the same way, so the job fails now with the reason.
        return _release(conn, job_id, token, str(exc), max_attempts=0)
    logger.info(
        "mailbox job succeeded",
        extra={
            "mails_seen": len(mails),
            "mails_processed": processed,
            "mails_failed": tally.failed,
            "mails_quarantined": tally.quarantined,
        },
    )
    return "succeeded"


def _not_claimed(conn: psycopg.Connection[Any], job_id: str) -> str:
    row = conn.execute(q("mailbox_job_get"), {"job_id": job_id}).fetchone()
    if row is None:
        logger.warning("mailbox job unknown; dropping the message", extra={"job_id": job_id})
        return "unknown_job"
    counters.incr(PROVIDER, Metric.DUP_QUEUE)
    if row[2] == "running":
        # A live lease: another worker has it (a duplicate delivery). Acknowledge; the holder finishes,
        # or its lease runs out and the reaper expires the job.
        return "busy"
    return f"already_{row[2]}"


def _release(
    conn: psycopg.Connection[Any], job_id: str, token: uuid.UUID, error: str, *, max_attempts: int | None = None
) -> str:
    with conn.transaction():
        row = conn.execute(
            q("mailbox_job_release"),
            {
                "job_id": job_id,
                "token": token,
                "error": error[:1000],
                "max_attempts": env_int("MAILBOX_MAX_ATTEMPTS", 3) if max_attempts is None else max_attempts,
                "queue_ttl": queue_ttl_seconds(),
            },
        ).fetchone()
    if row is None:
        return "claim_lost"
    logger.warning("mailbox job attempt failed", extra={"error": error, "status": row[0]})
    if row[0] == "queued":
        counters.incr(PROVIDER, Metric.RETRIED)
        raise JobRetryError(error)
    return "failed"


def _retry_soon(record: SQSRecord) -> None:
    """A released job's message comes back after ``MAILBOX_RETRY_SECONDS`` (60), not the JobsQueue's
    visibility timeout: that is an hour (six times the worker's timeout, for a job still running), and
    meanwhile the user's job is pending, so triggers answer 409 and ticks skip the user."""
    queue_url = os.environ.get("JOBS_QUEUE_URL")
    if not queue_url:
        return
    try:
        wait = env_int("MAILBOX_RETRY_SECONDS", 60)
        handle = record.receipt_handle
        aws.sqs().change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=wait)
    except Exception as exc:  # the message then waits out the queue's visibility timeout: later, never lost
        logger.warning("could not shorten the job's retry wait", extra={"error": type(exc).__name__})


class MailboxJobWorker:
    """JobsQueue batches (SQS FIFO, group = user) with partial batch failures.

    The mail processor is loaded once, here (``MAILBOX_PROCESSOR``): a wrong name stops the function at start.
    """

    def __init__(self, processor: MailProcessor | None = None) -> None:
        self.processor = processor if processor is not None else load_processor()

    @flushes_metrics
    def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        processor = SqsFifoPartialProcessor(skip_group_on_error=True)
        return dict(
            process_partial_response(
                event=dict(event), record_handler=self.handle_record, processor=processor, context=context
            )
        )

    def handle_record(self, record: SQSRecord) -> str:
        try:
            job_id = str(json.loads(record.body)["job_id"])
        except (ValueError, KeyError, TypeError) as exc:
            # Kept, never dropped: the raw body and the reason go to quarantine, and the message is acknowledged.
            reason = f"unreadable mailbox job message: {exc}"
            return store.quarantine_unreadable(db.connection(), PROVIDER, record.message_id, record.body, reason)
        logger.set_correlation_id(job_id)
        try:
            try:
                outcome = run_job(db.connection(), job_id, self.processor)
            except psycopg.OperationalError:
                db.reset()  # a broken connection: the retry opens a new one
                raise
            except JobRetryError:
                _retry_soon(record)
                raise
            logger.info("mailbox job settled", extra={"outcome": outcome})
            return outcome
        finally:
            logger.remove_keys(["job_id", "user_id"])
