"""Seed 004's races with real processes (spawned, like Lambda sandboxes): a scheduler tick and a hundred
manual triggers for one user at once (four trigger processes of 25, the tick in a fifth), and one job
delivered to four workers at once."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from exactly_once.flows.mailbox import jobs as mailbox_jobs
from tests import mailbox_support
from tests.mailbox_support import call, jobs, tick_child, triggers_child, work_child
from tests.proofs.concurrency_support import run_counted

pytestmark = pytest.mark.slow

dovecot = mailbox_support.dovecot
imap_proxy = mailbox_support.imap_proxy
mailbox_user = mailbox_support.mailbox_user


def _start_in_one_slot(lead: float = 4.0) -> float:
    """A start time at least ``lead`` s ahead and 20 s before the slot ends, so every racer sees one slot."""
    width = mailbox_jobs.slot_seconds()
    start = time.time() + lead
    if start % width > width - 20:
        start += width - start % width + 1
    return start


TRIGGERS = 100
TRIGGER_PROCESSES = 4
WORKERS = 4  # worker processes receiving the same job


def test_a_tick_and_a_hundred_triggers_from_four_processes_make_one_job_and_the_rest_conflict_naming_it(
    stack, db, mailbox_user, proof
):
    mailbox_user("alice")
    start = _start_in_one_slot()
    # WHEN a scheduler tick and 100 POST /jobs/alice/trigger run at once: 4 processes of 25 triggers, the tick in a 5th
    per = [TRIGGERS // TRIGGER_PROCESSES] * TRIGGER_PROCESSES
    calls = [(tick_child, (stack.env, start))] + [(triggers_child, (stack.env, "alice", n, start)) for n in per]
    results = run_counted(call, calls, processes=TRIGGER_PROCESSES + 1)
    tick_result = results[0][1]
    answers = [answer for batch in results[1:] for answer in batch]
    assert len(answers) == TRIGGERS
    # THEN exactly one job exists, with the slot's job id
    rows = jobs(db, "alice")
    assert len(rows) == 1
    the_job = rows[0][0]
    assert the_job == mailbox_jobs.job_id("alice", mailbox_jobs.slot_of(datetime.fromtimestamp(start, UTC)))
    # AND one of them made it (the tick or one trigger, answered 202 with it), every other trigger a 409 naming it
    accepted = [body["job_id"] for status, body in answers if status == 202]
    conflicts = [body for status, body in answers if status == 409]
    assert len(accepted) + tick_result["enqueued"] == 1
    assert len(conflicts) == TRIGGERS - len(accepted)  # 99, or all 100 when the tick made it
    assert set(accepted) <= {the_job}
    for body in conflicts:
        assert body["error"] == "job_pending"
        assert body["job_status"]["job_id"] == the_job
        assert body["job_status"]["has_scheduled_job"] or body["job_status"]["has_queued_job"]
        assert body["job_status"]["has_running_job"] is False
    queued = stack.queue_depth("JobsQueue")
    assert queued == 1
    made_by = "the tick" if tick_result["enqueued"] else "a trigger (202)"
    proof.record(
        kind="concurrency",
        flow="mailbox",
        name=f"a scheduler tick + {TRIGGERS} manual triggers for one user at once from {TRIGGER_PROCESSES} processes",
        cases=len(answers) + 1,
        held=(
            f"{len(rows)} job, made by {made_by}; {len(accepted)} x 202, {len(conflicts)} x 409 naming it; "
            f"{queued} message on JobsQueue"
        ),
    )


def test_one_job_delivered_to_four_workers_at_once_opens_one_imap_connection(stack, db, mailbox_user, proof):
    user = mailbox_user("alice")
    for i in range(5):
        user.add_mail(f"<w{i}@bank.example>")
    job_id = mailbox_support_trigger(stack)
    body = json.dumps({"job_id": job_id, "user_id": "alice"})
    start = time.time() + 4
    # WHEN four worker processes receive the same job at once (a duplicate delivery)
    results = run_counted(work_child, [({**stack.env, **user.env}, body, start)] * WORKERS, processes=WORKERS)
    # THEN none failed, one ran the job and the others stood back
    assert all(r == {"batchItemFailures": []} for r in results)
    ran = jobs(db, "alice")
    assert ran == [(job_id, "succeeded", "trigger", 1, 5)]
    # AND dovecot saw one login for the user, never two connections at once
    assert user.logins == 1
    assert user.max_connections_at_once == 1
    mails, most = db.execute("SELECT count(*), max(deliveries) FROM event_log").fetchone()
    assert (mails, most) == (5, 1)
    proof.record(
        kind="concurrency",
        flow="mailbox",
        name=f"one job delivered to {len(results)} workers at once",
        cases=len(results),
        held=f"{len(ran)} job run, {user.logins} IMAP login, {user.max_connections_at_once} connection at once, "
        f"{mails} mails {'once' if most == 1 else f'up to {most} times'}",
    )


def mailbox_support_trigger(stack) -> str:
    answer = stack.invoke_http(
        mailbox_support.TRIGGER, "POST", "http://127.0.0.1:3000/jobs/alice/trigger", b"", mailbox_support.TOKEN_HEADERS
    )
    assert answer.status == 202
    return str(answer.json()["job_id"])
