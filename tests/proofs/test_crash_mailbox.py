"""Mailbox jobs: SIGKILL at every boundary of the trigger, the scheduler and the worker; then the relay,
leases, the reaper and SQS redelivery -> every mail processed exactly once, one job per slot, never two
IMAP connections to the mailbox at once, and no job left pending."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from tests import mailbox_support
from tests.mailbox_support import SCHEDULER, TOKEN_HEADERS, TRIGGER, WORKER, MailboxUser, jobs
from tests.proofs.children import reap
from tests.proofs.crash_support import dlq_depth, kill_call, kill_http, kill_poll, redrive

pytestmark = pytest.mark.slow

FLOW = "mailbox"
QUEUE = "JobsQueue"
MAILS = 3
# The dead worker's claim lapses in a second (Postgres time), not the default 600 + 60 s.
SHORT_LEASE = {"MAILBOX_JOB_TIMEOUT_SECONDS": "1", "MAILBOX_LEASE_GRACE_SECONDS": "0"}
URL = "http://127.0.0.1:3000/jobs/alice/trigger"

dovecot = mailbox_support.dovecot
imap_proxy = mailbox_support.imap_proxy
mailbox_user = mailbox_support.mailbox_user


def tick_step() -> dict[str, Any]:
    """The scheduler's EventBridge invocation, in a child."""
    from devstack.lambda_runtime import LambdaContext, load_handler

    result: dict[str, Any] = load_handler(SCHEDULER)({"source": "aws.events"}, LambdaContext(SCHEDULER, 60))
    return result


def _tick(stack: Any) -> dict[str, Any]:
    from devstack.lambda_runtime import LambdaContext

    result: dict[str, Any] = stack.handler(SCHEDULER)({"source": "aws.events"}, LambdaContext(SCHEDULER, 60))
    return result


def _trigger(stack: Any) -> int:
    return stack.invoke_http(TRIGGER, "POST", URL, b"", TOKEN_HEADERS).status


def _kill_worker(stack: Any, user: MailboxUser, boundary: str) -> None:
    kill_poll(stack, boundary, WORKER, QUEUE, extra_env={**user.env, **SHORT_LEASE})
    time.sleep(1.3)  # the lease is Postgres time: let it lapse for real


def crash_trigger_after_insert(stack: Any, db: Any, user: MailboxUser) -> str:
    kill_http(stack, "mailbox.trigger_after_insert", TRIGGER, "POST", URL, b"", TOKEN_HEADERS)
    assert jobs(db, "alice")[0][1] == "scheduled" and stack.queue_depth(QUEUE) == 0
    assert _trigger(stack) == 409  # the recorded job is pending: the user's retry is refused
    assert _tick(stack)["relayed"] == 1  # the scheduler's relay sends the job the dead trigger did not
    stack.drain(WORKER, QUEUE)
    return "dead trigger's job relayed by the next tick"


def crash_schedule_after_insert(stack: Any, db: Any, user: MailboxUser) -> str:
    kill_call(stack, "mailbox.schedule_after_insert", "tests.proofs.test_crash_mailbox:tick_step")
    assert jobs(db, "alice")[0][1] == "scheduled" and stack.queue_depth(QUEUE) == 0
    again = _tick(stack)
    assert (again["enqueued"], again["skipped"], again["relayed"]) == (0, 1, 1)
    stack.drain(WORKER, QUEUE)
    return "dead tick's job relayed by the next tick"


def crash_after_claim(stack: Any, db: Any, user: MailboxUser) -> str:
    assert _trigger(stack) == 202
    _kill_worker(stack, user, "mailbox.after_claim")
    # The scheduled reaper expires the dead claim; the user's next slot gets a new job.
    assert reap(["mailbox_jobs"]) == {"mailbox_jobs": 1}
    assert jobs(db, "alice")[0][1] == "expired"
    redrive(stack, WORKER, QUEUE)  # the dead worker's message comes back: acknowledged, nothing done
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=16), tick=True):
        assert _tick(stack)["enqueued"] == 1
    stack.drain(WORKER, QUEUE)
    return "expired by the reaper, next slot's job processed the mails"


def _crash_then_takeover(stack: Any, db: Any, user: MailboxUser, boundary: str) -> str:
    assert _trigger(stack) == 202
    _kill_worker(stack, user, boundary)
    redrive(stack, WORKER, QUEUE)  # SQS redelivers; the lease has lapsed: the retry takes the job over
    return "redelivery took the lapsed claim over"


def crash_after_fetch(stack: Any, db: Any, user: MailboxUser) -> str:
    return _crash_then_takeover(stack, db, user, "mailbox.after_fetch")


def crash_after_mail(stack: Any, db: Any, user: MailboxUser) -> str:
    result = _crash_then_takeover(stack, db, user, "mailbox.after_mail")
    return result + " and skipped the mail already processed"


def crash_before_finish(stack: Any, db: Any, user: MailboxUser) -> str:
    result = _crash_then_takeover(stack, db, user, "mailbox.before_finish")
    return result + ", every mail already processed"


def crash_after_finish(stack: Any, db: Any, user: MailboxUser) -> str:
    assert _trigger(stack) == 202
    kill_poll(stack, "mailbox.after_finish", WORKER, QUEUE, extra_env=user.env)
    assert jobs(db, "alice")[0][1] == "succeeded"
    redrive(stack, WORKER, QUEUE)  # the message the dead worker never deleted: acknowledged
    return "finished job's redelivery acknowledged"


SCENARIOS: dict[str, Callable[[Any, Any, MailboxUser], str]] = {
    "mailbox.trigger_after_insert": crash_trigger_after_insert,
    "mailbox.schedule_after_insert": crash_schedule_after_insert,
    "mailbox.after_claim": crash_after_claim,
    "mailbox.after_fetch": crash_after_fetch,
    "mailbox.after_mail": crash_after_mail,
    "mailbox.before_finish": crash_before_finish,
    "mailbox.after_finish": crash_after_finish,
}


@pytest.mark.parametrize("boundary", sorted(SCENARIOS))
def test_sigkill_at_boundary_then_recovery_processes_each_mail_once(
    stack, db, proof, mailbox_user, monkeypatch, boundary
):
    # GIVEN a user with mails; the relay may send a job as soon as it is found unsent
    stack.env["MAILBOX_RELAY_GRACE_SECONDS"] = "0"  # children inherit stack.env
    monkeypatch.setenv("MAILBOX_RELAY_GRACE_SECONDS", "0")
    user = mailbox_user("alice")
    for i in range(MAILS):
        user.add_mail(f"<crash{i}@bank.example>")
    # WHEN a process is SIGKILLed at the boundary and recovery runs
    how = SCENARIOS[boundary](stack, db, user)
    # THEN each mail was processed exactly once, by one succeeded job, and nothing is left pending
    rows = jobs(db, "alice")
    assert [r[1] for r in rows].count("succeeded") == 1
    assert not [r for r in rows if r[1] in ("scheduled", "queued", "running")]
    assert db.execute("SELECT count(*) FROM processed_mails").fetchone()[0] == MAILS
    assert db.execute("SELECT count(*), max(deliveries) FROM event_log WHERE provider = 'mailbox'").fetchone() == (
        MAILS,
        1,
    )
    assert user.max_connections_at_once <= 1
    assert stack.queue_depth(QUEUE) == 0 and dlq_depth(stack) == 0
    proof.record(
        kind="crash",
        flow=FLOW,
        name=boundary,
        cases=1,
        held=(
            f"{MAILS} mails -> {MAILS} processed once ({len(rows)} jobs, 1 succeeded); {how}; "
            f"IMAP connections at once: {user.max_connections_at_once}"
        ),
    )
