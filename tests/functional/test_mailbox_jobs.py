"""Mailbox jobs (the mailbox-jobs incident), end to end: the real handlers on moto and Postgres,
a real dovecot over IMAP.

The rule under test is EXACTLY ONE pending job (scheduled, queued or running) per user:
a trigger while a job is queued or running is refused with 409, not queued behind it.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import time_machine
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from devstack.lambda_runtime import LambdaContext, sqs_event
from exactly_once.core import aws
from exactly_once.flows.mailbox import jobs as mailbox_jobs
from exactly_once.flows.mailbox import scheduling as mailbox_scheduling
from exactly_once.flows.mailbox.scheduling import JobConflictError
from exactly_once.ops.reapers import run_all
from tests import mailbox_support
from tests.mailbox_support import SCHEDULER, TOKEN_HEADERS, TRIGGER, WORKER, jobs, work_child
from tests.procs import run_parallel

BASE = "http://127.0.0.1:3000"

# The fixtures of the real dovecot, its counting proxy and the user factory.
dovecot = mailbox_support.dovecot
imap_proxy = mailbox_support.imap_proxy
mailbox_user = mailbox_support.mailbox_user


def trigger(stack, user_id: str):
    return stack.invoke_http(TRIGGER, "POST", f"{BASE}/jobs/{user_id}/trigger", b"", TOKEN_HEADERS)


def job_status(stack, user_id: str):
    return stack.invoke_http(TRIGGER, "GET", f"{BASE}/jobs/{user_id}", b"", TOKEN_HEADERS)


def tick(stack) -> dict[str, Any]:
    from devstack.lambda_runtime import LambdaContext

    result: dict[str, Any] = stack.handler(SCHEDULER)({"source": "aws.events"}, LambdaContext(SCHEDULER, 60))
    return result


def _trigger_refusal(stack):
    """The job trigger function's mapping of the mailbox flow's errors to HTTP answers."""
    import importlib

    return importlib.import_module(stack.handler(TRIGGER).__module__).refusal


def drain_jobs(stack) -> int:
    return stack.drain(WORKER, "JobsQueue")


def test_trigger_answers_202_then_409_with_the_pending_jobs_status(stack, db, mailbox_user):
    mailbox_user("alice")
    # WHEN the user triggers processing twice
    first = trigger(stack, "alice")
    second = trigger(stack, "alice")
    # THEN the first is accepted with the job id, queued on the JobsQueue
    assert first.status == 202
    job_id = first.json()["job_id"]
    assert job_id.startswith("mbx-alice-")
    assert stack.queue_depth("JobsQueue") == 1
    # AND the second is refused, naming the pending job and its state
    assert second.status == 409
    body = second.json()
    assert body["error"] == "job_pending"
    assert body["job_status"]["job_id"] == job_id
    assert (body["job_status"]["has_queued_job"], body["job_status"]["has_running_job"]) == (True, False)
    assert body["job_status"]["has_scheduled_job"] is False
    assert body["job_status"]["since"]
    # AND GET /jobs/{user_id} reports the same
    status = job_status(stack, "alice")
    assert status.status == 200
    assert status.json()["job_id"] == job_id and status.json()["has_queued_job"] is True
    assert jobs(db, "alice") == [(job_id, "queued", "trigger", 0, 0)]


def test_unknown_user_is_404_and_disabled_user_is_409(stack, db, mailbox_user):
    mailbox_user("off", enabled=False)
    assert trigger(stack, "nobody").status == 404
    assert job_status(stack, "nobody").status == 404
    disabled = trigger(stack, "off")
    assert (disabled.status, disabled.json()["error"]) == (409, "mailbox_disabled")
    assert db.execute("SELECT count(*) FROM mailbox_jobs").fetchone()[0] == 0


def test_a_scheduler_tick_and_ten_concurrent_triggers_make_exactly_one_job(stack, db, database_url, mailbox_user):
    mailbox_user("alice")
    sqs, url = aws.sqs(), stack.env["JOBS_QUEUE_URL"]
    now = datetime.now(UTC)
    barrier = threading.Barrier(11)
    accepted: list[str] = []
    refused: list[JobConflictError] = []
    ticks: list[mailbox_scheduling.TickResult] = []

    def one_trigger() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            barrier.wait()
            try:
                accepted.append(mailbox_scheduling.trigger(conn, sqs, url, "alice", now).job_id)
            except JobConflictError as exc:
                refused.append(exc)

    def one_tick() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            barrier.wait()
            ticks.append(mailbox_scheduling.tick(conn, sqs, url, now))

    # WHEN a scheduler tick and ten manual triggers (each its own connection) fire at once
    threads = [threading.Thread(target=one_trigger) for _ in range(10)] + [threading.Thread(target=one_tick)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # THEN exactly one job exists for the user, and it is the one job id of this slot
    rows = jobs(db, "alice")
    assert len(rows) == 1
    the_job = rows[0][0]
    assert the_job == mailbox_jobs.job_id("alice", mailbox_jobs.slot_of(now))
    winners = accepted + ticks[0].enqueued
    assert winners == [the_job]
    # AND every refused trigger got 409 'job_pending' naming that job in a pending state
    assert len(refused) == 10 - len(accepted)
    refusal = _trigger_refusal(stack)
    for exc in refused:
        assert refusal(exc)["statusCode"] == 409 and exc.code == "job_pending"
        status = exc.job_status.as_dict()
        assert status["job_id"] == the_job
        assert status["has_scheduled_job"] or status["has_queued_job"]
    # AND a tick that lost is logged as a skip, not an error; one message is on the queue
    assert len(ticks[0].enqueued) + len(ticks[0].skipped) == 1
    assert stack.queue_depth("JobsQueue") == 1


def test_ten_concurrent_triggers_after_the_slots_job_finished_make_exactly_one_new_job(
    stack, db, database_url, mailbox_user
):
    # GIVEN the slot's job finished (nothing pending)
    mailbox_user("alice")
    sqs, url = aws.sqs(), stack.env["JOBS_QUEUE_URL"]
    now = datetime.now(UTC)
    finished = mailbox_scheduling.trigger(db, sqs, url, "alice", now).job_id
    db.execute("UPDATE mailbox_jobs SET status = 'succeeded', finished_at = now() WHERE job_id = %s", (finished,))
    barrier = threading.Barrier(10)
    accepted: list[str] = []
    refused: list[JobConflictError] = []

    def one_trigger() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            barrier.wait()
            try:
                accepted.append(mailbox_scheduling.trigger(conn, sqs, url, "alice", now).job_id)
            except JobConflictError as exc:
                refused.append(exc)

    # WHEN ten triggers in the same slot fire at once
    threads = [threading.Thread(target=one_trigger) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # THEN exactly one new job, the slot's first re-run, and nine 409 job_pending naming it
    assert accepted == [f"{finished}-r1"]
    assert [r[:2] for r in jobs(db, "alice")] == [(finished, "succeeded"), (f"{finished}-r1", "queued")]
    assert len(refused) == 9
    assert {(e.code, e.job_status.job_id) for e in refused} == {("job_pending", f"{finished}-r1")}


def test_the_store_refuses_a_second_pending_job_whoever_writes_it(db, mailbox_user):
    mailbox_user("alice")
    insert = (
        "INSERT INTO mailbox_jobs (job_id, user_id, slot, origin, status, claim_token, lease_until)"
        " VALUES (%s, 'alice', now(), 'trigger', %s, %s, now())"
    )
    db.execute(insert, ("j-running", "running", "00000000-0000-0000-0000-000000000001"))
    # Exactly one pending job: not even "one running plus one queued".
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(insert, ("j-queued", "queued", None))
    db.execute("UPDATE mailbox_jobs SET status = 'succeeded' WHERE job_id = 'j-running'")
    db.execute(insert, ("j-next", "queued", None))
    assert [r[0] for r in jobs(db, "alice")] == ["j-running", "j-next"]


def test_worker_reads_the_mailbox_over_imap_and_processes_each_mail_once(stack, db, mailbox_user):
    user = mailbox_user("alice")
    for i in range(3):
        user.add_mail(f"<m{i}@bank.example>", subject=f"statement {i}")
    user.add_mail(None, subject="no message id")
    # A moment early in a slot, so the two triggers below fall in one slot however slow the machine
    at = mailbox_jobs.slot_of(datetime.now(UTC)) + timedelta(seconds=5)
    # WHEN a job runs
    with time_machine.travel(at, tick=True):
        first = trigger(stack, "alice")
    assert drain_jobs(stack) == 1
    # THEN each mail was processed once, the job succeeded and last_check_time was set
    assert jobs(db, "alice") == [(first.json()["job_id"], "succeeded", "trigger", 1, 4)]
    assert db.execute("SELECT count(*) FROM processed_mails").fetchone()[0] == 4
    assert db.execute("SELECT count(*), max(deliveries) FROM event_log WHERE provider = 'mailbox'").fetchone() == (
        4,
        1,
    )
    checked = db.execute("SELECT last_check_time FROM mailbox_configs").fetchone()[0]
    assert checked is not None
    assert user.logins == 1 and user.max_connections_at_once == 1
    status = job_status(stack, "alice").json()
    assert status["job_id"] is None and not status["has_running_job"]

    # WHEN a new mail arrives and the user triggers again in the same slot (nothing is pending)
    user.add_mail("<m3@bank.example>")
    with time_machine.travel(at, tick=True):
        later = trigger(stack, "alice")
    # THEN it makes the slot's next job, not a 409: mail may have come after the finished job read the mailbox
    assert (later.status, later.json()["job_id"]) == (202, first.json()["job_id"] + "-r1")
    drain_jobs(stack)
    # THEN only the new mail was processed; last_check_time only moved forward
    assert db.execute("SELECT count(*) FROM processed_mails").fetchone()[0] == 5
    assert jobs(db, "alice")[-1][1:] == ("succeeded", "trigger", 1, 1)
    assert db.execute("SELECT max(deliveries) FROM event_log").fetchone()[0] == 1
    assert db.execute("SELECT last_check_time FROM mailbox_configs").fetchone()[0] > checked


def test_a_job_retried_after_a_crash_mid_way_processes_each_mail_once(stack, db, mailbox_user):
    user = mailbox_user("alice")
    for i in range(4):
        user.add_mail(f"<c{i}@bank.example>")
    job_id = trigger(stack, "alice").json()["job_id"]
    body = json.dumps({"job_id": job_id, "user_id": "alice"})
    # WHEN the worker is killed (SIGKILL) right after processing its first mail
    env = {**stack.env, **user.env, "EO_CRASH_AT": "mailbox.after_mail"}
    with pytest.raises(Exception):  # noqa: B017 - the child dies: the pool reports a broken process
        run_parallel(work_child, [(env, body, 0.0)], processes=1)
    assert db.execute("SELECT count(*) FROM processed_mails").fetchone()[0] == 1
    assert jobs(db, "alice")[0][1] == "running"
    # AND a redelivery while its lease is live does nothing (another worker may still hold it)
    busy = run_parallel(work_child, [({**stack.env, **user.env}, body, 0.0)], processes=1)
    assert busy == [{"batchItemFailures": []}]
    assert db.execute("SELECT attempts FROM mailbox_jobs").fetchone()[0] == 1
    # WHEN the lease has run out and the queue redelivers the message
    db.execute("UPDATE mailbox_jobs SET lease_until = now() - interval '1 second'")
    stack.sqs().send_message(
        QueueUrl=stack.env["JOBS_QUEUE_URL"], MessageBody=body, MessageGroupId="mbx-alice", MessageDeduplicationId="r1"
    )
    drain_jobs(stack)
    # THEN the retry took the job over and processed the remaining mails, each exactly once
    assert jobs(db, "alice")[-1][:4] == (job_id, "succeeded", "trigger", 2)
    assert db.execute("SELECT count(*) FROM processed_mails").fetchone()[0] == 4
    assert db.execute("SELECT count(*), max(deliveries) FROM event_log").fetchone() == (4, 1)


def test_an_imap_failure_releases_the_job_and_the_queue_retry_succeeds(stack, db, mailbox_user, monkeypatch):
    user = mailbox_user("alice")
    user.add_mail("<r1@bank.example>")
    trigger(stack, "alice")
    # WHEN the first attempt cannot log in (a wrong password in the secret)
    monkeypatch.setenv(user.secret_name, "wrong")
    poller = stack.poller(WORKER, "JobsQueue")
    poller.poll_once()
    # THEN the job is back in the queue's hands (queued, one attempt), nothing processed
    assert jobs(db, "alice")[0][1:4] == ("queued", "trigger", 1)
    assert db.execute("SELECT error FROM mailbox_jobs").fetchone()[0].startswith("reading")
    assert poller.stats["failures"] == 1
    # WHEN the secret is fixed and SQS redelivers
    monkeypatch.setenv(user.secret_name, user.password)
    drain_jobs(stack)
    assert jobs(db, "alice")[0][1:5] == ("succeeded", "trigger", 2, 1)


def test_a_crashed_jobs_lease_expires_the_reaper_marks_it_and_the_next_slot_proceeds(stack, db, mailbox_user):
    mailbox_user("alice", interval_minutes=1)
    first = tick(stack)
    assert first["enqueued"] == 1
    job_id = jobs(db, "alice")[0][0]
    body = json.dumps({"job_id": job_id, "user_id": "alice"})
    # WHEN the worker dies right after claiming
    env = {**stack.env, "EO_CRASH_AT": "mailbox.after_claim"}
    with pytest.raises(Exception):  # noqa: B017
        run_parallel(work_child, [(env, body, 0.0)], processes=1)
    # THEN the next tick skips the user: its job is still running
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=2), tick=True):
        skipped = tick(stack)
    assert (skipped["enqueued"], skipped["skipped"]) == (0, 1)
    # WHEN the lease runs out and the reaper runs
    db.execute("UPDATE mailbox_jobs SET lease_until = now() - interval '1 second'")
    assert run_all(db, only=["mailbox_jobs"]) == {"mailbox_jobs": 1}
    assert jobs(db, "alice")[0][1] == "expired"
    # THEN the next slot gets a new job, and the old message, redelivered, is dropped
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=3), tick=True):
        assert tick(stack)["enqueued"] == 1
    assert drain_jobs(stack) >= 1
    statuses = [r[1] for r in jobs(db, "alice")]
    assert statuses == ["expired", "succeeded"]


def test_database_down_the_trigger_answers_503_and_writes_nothing(stack, db, mailbox_user, monkeypatch):
    mailbox_user("alice")
    # GIVEN DATABASE_URL points at a closed port
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{closed}/nowhere")
    from exactly_once.core import db as db_module

    db_module.reset()
    # WHEN the user triggers processing, and asks for the status
    answer = trigger(stack, "alice")
    status = job_status(stack, "alice")
    # THEN both answer 503 with a clear JSON error
    assert answer.status == 503 and status.status == 503
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": "database_unavailable", "message": "database unavailable"}
    # AND nothing was half-written: no job row, no message on the queue
    assert db.execute("SELECT count(*) FROM mailbox_jobs").fetchone()[0] == 0
    assert stack.queue_depth("JobsQueue") == 0


def test_a_job_whose_send_failed_stays_scheduled_and_the_next_tick_relays_it(stack, db, mailbox_user, monkeypatch):
    mailbox_user("alice")
    # GIVEN the JobsQueue is unreachable when the trigger sends
    stack.handler(TRIGGER)  # load the module before patching its queue URL
    monkeypatch.setattr("job_trigger.JOBS_QUEUE_URL", stack.env["JOBS_QUEUE_URL"] + "-missing")
    answer = trigger(stack, "alice")
    # THEN the job is recorded (202) and stays 'scheduled': the trigger's status says so
    assert answer.status == 202
    assert jobs(db, "alice")[0][1] == "scheduled"
    assert trigger(stack, "alice").json()["job_status"]["has_scheduled_job"] is True
    assert stack.queue_depth("JobsQueue") == 0
    # WHEN the scheduler ticks after the grace period
    db.execute("UPDATE mailbox_jobs SET created_at = now() - interval '1 minute'")
    assert tick(stack)["relayed"] == 1
    # THEN it is on the queue and runs
    assert jobs(db, "alice")[0][1] == "queued"
    drain_jobs(stack)
    assert jobs(db, "alice")[0][1] == "succeeded"


def test_the_job_routes_are_behind_the_api_token_authorizer(stack):
    events = stack.aws.template.functions()[TRIGGER]["Properties"]["Events"]
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]): e["Properties"] for e in events.values()}
    assert set(routes) == {("POST", "/jobs/{user_id}/trigger"), ("GET", "/jobs/{user_id}")}
    assert all(p["Auth"] == {"Authorizer": "ApiToken"} for p in routes.values())
    authorize = stack.handler("ApiAuthorizerFunction")
    assert authorize({"headers": TOKEN_HEADERS}, None) == {"isAuthorized": True}
    assert authorize({"headers": {"authorization": "Bearer nope"}}, None) == {"isAuthorized": False}


def test_the_sample_events_drive_the_scheduler_and_the_trigger(stack, db, mailbox_user):
    from devstack.lambda_runtime import LambdaContext
    from devstack.template import ROOT

    mailbox_user("alice")
    schedule = json.loads((ROOT / "events" / "job_schedule.json").read_text())
    request = json.loads((ROOT / "events" / "job_trigger.json").read_text())
    # WHEN EventBridge's scheduled event reaches the scheduler, then the sample trigger request arrives
    ticked = stack.handler(SCHEDULER)(schedule, LambdaContext(SCHEDULER, 60))
    answer = stack.handler(TRIGGER)(request, LambdaContext(TRIGGER))
    # THEN the tick made the job, and the trigger was refused naming it
    assert ticked["enqueued"] == 1
    assert answer["statusCode"] == 409
    assert json.loads(answer["body"])["job_status"]["job_id"] == jobs(db, "alice")[0][0]


def test_last_check_time_never_moves_back_and_a_stale_claim_finishes_nothing(stack, db, mailbox_user):
    import uuid

    from exactly_once.core.queries import q

    mailbox_user("alice")
    ahead = datetime.now(UTC) + timedelta(days=1)
    db.execute("UPDATE mailbox_configs SET last_check_time = %s", (ahead,))
    # WHEN a job runs whose check started before the recorded last_check_time
    job_id = trigger(stack, "alice").json()["job_id"]
    drain_jobs(stack)
    # THEN the job succeeded and last_check_time stayed where it was (GREATEST)
    assert jobs(db, "alice")[0][1] == "succeeded"
    assert db.execute("SELECT last_check_time FROM mailbox_configs").fetchone()[0] == ahead
    # AND a completion with a claim token that is not the job's changes nothing
    stale = db.execute(
        q("mailbox_job_finish"),
        {"job_id": job_id, "token": uuid.uuid4(), "seen": 9, "processed": 9, "checked_at": ahead + timedelta(days=1)},
    ).fetchone()
    assert stale is None
    assert jobs(db, "alice")[0][4] == 0
    assert db.execute("SELECT last_check_time FROM mailbox_configs").fetchone()[0] == ahead


def test_an_unreadable_job_message_is_quarantined_not_retried(stack, db):
    # WHEN a message that is not a job reaches the JobsQueue
    stack.sqs().send_message(
        QueueUrl=stack.env["JOBS_QUEUE_URL"], MessageBody="not json", MessageGroupId="g", MessageDeduplicationId="x1"
    )
    drain_jobs(stack)
    # THEN it is kept in quarantine with its body and the reason, and acknowledged
    row = db.execute("SELECT provider, reason, raw FROM quarantine").fetchone()
    assert row[0] == "mailbox" and row[1].startswith("unreadable mailbox job message")
    assert json.loads(row[2]) == {"body": "not json"}
    assert stack.queue_depth("JobsQueue") == 0


def test_a_released_job_comes_back_after_the_retry_wait_not_the_queues_hour(stack, db, mailbox_user, monkeypatch):
    # GIVEN a retry wait of 2 s (60 s deployed) and a job whose IMAP login fails
    monkeypatch.setenv("MAILBOX_RETRY_SECONDS", "2")
    user = mailbox_user("alice")
    user.add_mail("<w1@bank.example>")
    trigger(stack, "alice")
    monkeypatch.setenv(user.secret_name, "wrong")
    url, sqs = stack.aws.physical["JobsQueue"], stack.sqs()
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    # WHEN the worker runs it as Lambda would (not the local poller, which makes a failure visible at once)
    with pytest.raises(BatchProcessingError):  # its only record failed: the invocation fails, nothing deleted
        stack.handler(WORKER)(sqs_event(messages, stack.aws.arns["JobsQueue"]), LambdaContext())
    assert jobs(db, "alice")[0][1:4] == ("queued", "trigger", 1)
    # THEN the message is hidden for the retry wait only (the queue's visibility timeout is an hour)
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages") is None
    time.sleep(2.5)
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    assert [m["MessageId"] for m in again] == [messages[0]["MessageId"]]
    # AND with the secret fixed, that delivery succeeds
    monkeypatch.setenv(user.secret_name, user.password)
    assert stack.handler(WORKER)(sqs_event(again, stack.aws.arns["JobsQueue"]), LambdaContext()) == {
        "batchItemFailures": []
    }
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again[0]["ReceiptHandle"])  # as Lambda does after a success
    assert jobs(db, "alice")[0][1:5] == ("succeeded", "trigger", 2, 1)
