"""Each mail of a job, once: recorded in ``processed_mails`` and processed in the same transaction.

Per mail, one transaction fenced on the job's claim (``mailbox_job_fence``, FOR SHARE), holding a
savepoint with the ``processed_mails`` INSERT .. ON CONFLICT DO NOTHING, the processor's effect and
the ``event_log`` row: the three commit together or not at all. A mail already recorded is skipped.
When the processor raises, the savepoint rolls its writes back and the same transaction counts the
failure in ``mailbox_mail_failures`` (with the message, so the user's next jobs retry it from there),
or quarantines the mail once it failed ``MAILBOX_MAIL_MAX_FAILURES`` times or was rejected
(``MailRejectedError``); the job goes on with the other mails and still succeeds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from exactly_once.core import store
from exactly_once.core.crash import crashpoint
from exactly_once.core.events import InboundEvent
from exactly_once.core.queries import q
from exactly_once.core.settings import env_int
from exactly_once.core.telemetry import Metric, counters, logger
from exactly_once.flows.mailbox.imap import Mail
from exactly_once.flows.mailbox.jobs import PROVIDER
from exactly_once.flows.mailbox.message import parse
from exactly_once.flows.mailbox.processors import MailProcessor, MailRejectedError


class ClaimLostError(Exception):
    """Our claim was expired or taken over: stop, write nothing more."""


@dataclass
class Tally:
    processed: int = 0  # recorded and processed now
    duplicates: int = 0  # recorded before (a retried job, the search's day of overlap)
    failed: int = 0  # the processor raised: left for the next job
    quarantined: int = 0  # failed too often, or rejected


def max_failures() -> int:
    return max(1, env_int("MAILBOX_MAIL_MAX_FAILURES", 5))


def known(conn: psycopg.Connection[Any], user_id: str, message_ids: list[str]) -> set[str]:
    """The Message-IDs whose body the job need not read (processed, or quarantined)."""
    rows = conn.execute(q("processed_mails_known"), {"user_id": user_id, "message_ids": message_ids})
    return {row[0] for row in rows}


def retrying(conn: psycopg.Connection[Any], user_id: str, found: list[Mail]) -> list[Mail]:
    """The mails a processor failed on in earlier jobs and the search did not find again: from their stored copy."""
    seen = {m.message_id for m in found if m.raw is not None}
    rows = conn.execute(q("mail_failures_retrying"), {"user_id": user_id, "limit": 200}).fetchall()
    return [
        Mail(message_id=r[0], uid=int(r[1] or 0), received_at=r[2], subject=r[3], sender=r[4], raw=bytes(r[5]))
        for r in rows
        if r[0] not in seen
    ]


def process_mails(
    conn: psycopg.Connection[Any],
    job_id: str,
    token: uuid.UUID,
    user_id: str,
    mails: list[Mail],
    processor: MailProcessor,
) -> Tally:
    tally = Tally()
    for mail in mails:
        if mail.raw is None:  # ``known``: processed or quarantined already, its body was not read
            tally.duplicates += 1
            counters.incr(PROVIDER, Metric.DUP_DATABASE)
            continue
        outcome = _one(conn, job_id, token, user_id, mail, processor)
        setattr(tally, outcome, getattr(tally, outcome) + 1)
        if outcome == "processed":
            counters.incr(PROVIDER, Metric.EFFECTS)
            crashpoint("mailbox.after_mail")
        elif outcome == "duplicates":
            counters.incr(PROVIDER, Metric.DUP_DATABASE)
    return tally


def _one(
    conn: psycopg.Connection[Any], job_id: str, token: uuid.UUID, user_id: str, mail: Mail, processor: MailProcessor
) -> str:
    raw = _raw(mail)
    key = {"user_id": user_id, "message_id": mail.message_id}
    with conn.transaction():
        if conn.execute(q("mailbox_job_fence"), {"job_id": job_id, "token": token}).fetchone() is None:
            raise ClaimLostError(job_id)
        try:
            with conn.transaction():  # a savepoint: the record and the processor's effect, together or not at all
                inserted = conn.execute(
                    q("processed_mail_insert"),
                    {
                        **key,
                        "job_id": job_id,
                        "subject": mail.subject,
                        "sender": mail.sender,
                        "received_at": mail.received_at,
                    },
                ).fetchone()
                if inserted is None:
                    return "duplicates"
                parsed = parse(
                    raw,
                    user_id=user_id,
                    message_id=mail.message_id,
                    uid=mail.uid,
                    received_at=mail.received_at,
                    subject=mail.subject,
                    sender=mail.sender,
                )
                result = processor.process(conn, parsed)
                store.record_event(
                    conn,
                    InboundEvent(
                        provider=PROVIDER,
                        key=f"{user_id}:{mail.message_id}",
                        group=user_id,
                        kind="mail",
                        payload={
                            "job_id": job_id,
                            "subject": mail.subject,
                            "sender": mail.sender,
                            **({"result": dict(result)} if result else {}),
                        },
                    ),
                    "processed",
                    inserted[0],
                )
                conn.execute(q("mail_failure_settled"), key)
            return "processed"
        except (ClaimLostError, psycopg.OperationalError):
            raise  # not the mail's fault: the job stops (claim lost) or is retried (connection)
        except MailRejectedError as exc:
            return _failed(conn, job_id, user_id, mail, f"rejected: {exc}", limit=0)
        except Exception as exc:
            return _failed(conn, job_id, user_id, mail, f"{type(exc).__name__}: {exc}", limit=max_failures())


def _failed(conn: psycopg.Connection[Any], job_id: str, user_id: str, mail: Mail, error: str, *, limit: int) -> str:
    """Count the failure (inside the fenced transaction); quarantine the mail at the limit."""
    raw = _raw(mail)
    error = error[:1000]
    row = conn.execute(
        q("mail_failure_record"),
        {
            "user_id": user_id,
            "message_id": mail.message_id,
            "max_failures": limit,
            "error": error,
            "job_id": job_id,
            "uid": mail.uid,
            "received_at": mail.received_at,
            "subject": mail.subject,
            "sender": mail.sender,
            "raw": raw,
        },
    ).fetchone()
    counters.incr(PROVIDER, Metric.FAILED)
    failures, status = (int(row[0]), str(row[1])) if row else (0, "settled")
    log = {"message_id": mail.message_id, "failures": failures, "error": error}
    if status != "quarantined":
        logger.warning("mail processor failed; the mail is retried by the next job", extra=log)
        return "failed"
    quarantine_id, _ = store.quarantine(
        conn,
        provider=PROVIDER,
        event_key=f"{user_id}:{mail.message_id}",
        reason=f"mail processor failed {failures} time(s); last: {error}",
        raw=raw_text(raw),
        external_id=mail.message_id,
    )
    conn.execute(
        q("mail_failure_quarantined"),
        {"user_id": user_id, "message_id": mail.message_id, "quarantine_id": quarantine_id},
    )
    counters.incr(PROVIDER, Metric.QUARANTINED)
    logger.warning("mail quarantined after its processor failed", extra={**log, "quarantine_id": quarantine_id})
    return "quarantined"


def raw_text(raw: bytes) -> str:
    """The message as text for the quarantine row: UTF-8, else byte for byte as Latin-1 (lossless)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _raw(mail: Mail) -> bytes:
    """The message's bytes: only mails read in full (not ``known`` ones) reach the processor or a failure."""
    if mail.raw is None:
        raise ValueError(f"mail {mail.message_id!r} was not read in full")
    return mail.raw
