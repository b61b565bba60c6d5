"""The scheduler's due users: users waiting on a pending job never take a due user's place in the
tick's limit, and each of them is still reported as skipped with its job's status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from exactly_once.core.queries import q
from exactly_once.flows.mailbox import jobs as mailbox_jobs
from exactly_once.flows.mailbox import scheduling as mailbox_scheduling


def _users(db, *user_ids: str) -> None:
    for user_id in user_ids:
        db.execute(
            "INSERT INTO mailbox_configs (user_id, interval_minutes, imap_host, imap_username, password_secret) "
            "VALUES (%s, 1, 'imap.invalid', %s, 'MAILBOX_PASSWORD_X')",
            (user_id, user_id),
        )


def _pending(db, user_id: str, status: str, slot: datetime) -> None:
    db.execute(
        "INSERT INTO mailbox_jobs (job_id, user_id, slot, origin, status, claim_token, lease_until) "
        "VALUES (%s, %s, %s, 'schedule', %s, CASE WHEN %s = 'running' THEN gen_random_uuid() END, "
        "now() + interval '1 hour')",
        (f"mbx-{user_id}-old", user_id, slot, status, status),
    )


def _setup(db) -> datetime:
    """a1..a3 first in order, each with a pending job from an hour ago; b1, b2 due, never checked."""
    now = datetime.now(UTC)
    old_slot = mailbox_jobs.slot_of(now - timedelta(hours=1))
    _users(db, "a1", "a2", "a3", "b1", "b2")
    for user_id, status in (("a1", "scheduled"), ("a2", "queued"), ("a3", "running")):
        _pending(db, user_id, status, old_slot)
    return now


def test_users_with_a_pending_job_do_not_count_against_the_limit(stack, db):
    now = _setup(db)
    rows = db.execute(q("mailbox_users_due"), {"slot": mailbox_jobs.slot_of(now), "limit": 2}).fetchall()
    due = [r[0] for r in rows if r[2] is None]
    pending = {r[0]: r[3] for r in rows if r[2] is not None}
    assert due == ["b1", "b2"]
    assert pending == {"a1": "scheduled", "a2": "queued"}  # limited apart


def test_a_tick_reaches_due_users_behind_pending_ones_and_reports_the_skips(stack, db, monkeypatch):
    now = _setup(db)
    monkeypatch.setattr(mailbox_scheduling, "DUE_PER_TICK", 3)
    result = mailbox_scheduling.tick(db, stack.sqs(), stack.env["JOBS_QUEUE_URL"], now)
    slot = mailbox_jobs.slot_of(now)
    assert sorted(result.enqueued) == [mailbox_jobs.job_id("b1", slot), mailbox_jobs.job_id("b2", slot)]
    assert result.skipped == {"a1": "scheduled", "a2": "queued", "a3": "running"}
    assert stack.queue_depth("JobsQueue") == 2


def test_one_users_failure_does_not_stop_the_tick_for_the_others(stack, db, capsys):
    from exactly_once.core.telemetry import Metric, counters
    from tests import emf

    # GIVEN three due users, and the store refusing b2's job with a real error (a constraint b2's row breaks)
    now = datetime.now(UTC)
    _users(db, "b1", "b2", "b3")
    db.execute("ALTER TABLE mailbox_jobs ADD CONSTRAINT test_b2_broken CHECK (user_id <> 'b2')")
    capsys.readouterr()
    # WHEN the scheduler ticks
    result = mailbox_scheduling.tick(db, stack.sqs(), stack.env["JOBS_QUEUE_URL"], now)
    # THEN b1 and b3 got their jobs, b2's failure is reported and counted, and the tick returned normally
    slot = mailbox_jobs.slot_of(now)
    assert sorted(result.enqueued) == [mailbox_jobs.job_id("b1", slot), mailbox_jobs.job_id("b3", slot)]
    assert list(result.failed) == ["b2"] and "CheckViolation" in result.failed["b2"]
    assert result.as_dict()["failed"] == 1
    assert stack.queue_depth("JobsQueue") == 2
    counters.flush()  # as the scheduler function does at the end of its invocation
    assert emf.emitted(capsys)[("mailbox", Metric.SCHEDULE_FAILURES)] == 1
    # AND once the cause is gone, the next tick schedules b2
    db.execute("ALTER TABLE mailbox_jobs DROP CONSTRAINT test_b2_broken")
    again = mailbox_scheduling.tick(db, stack.sqs(), stack.env["JOBS_QUEUE_URL"], now)
    assert again.enqueued == [mailbox_jobs.job_id("b2", slot)] and not again.failed
