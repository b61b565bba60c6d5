"""Pacing of the send queue on Postgres: a deferral never moves a row back in time, duplicate
deliveries of a paced row add no outbox records, and a daily cap of 0 lets nothing through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from exactly_once.sends import queue as send_queue
from exactly_once.sends.delivery import deliver
from exactly_once.sends.request import SendRequest
from tests.send_support import row


def _queue(db, key: str, sender: str = "acc_p") -> int:
    with db.transaction():
        queued = send_queue.enqueue(db, SendRequest(key, "unipile", sender, f"chat_{key}", {"text": f"hello {key}"}))
    return queued.id


def _waiting_records(db, send_id: int) -> int:
    return db.execute(
        "SELECT count(*) FROM send_outbox WHERE send_id = %s AND relayed_at IS NULL", (send_id,)
    ).fetchone()[0]


def _relay_all(db) -> None:
    db.execute("UPDATE send_outbox SET relayed_at = now(), relays = relays + 1 WHERE relayed_at IS NULL")


def test_a_deferral_never_moves_a_newer_reschedule_back(stack, db):
    # GIVEN a sender that just sent (30 s spacing) and a due row of it
    send_queue.set_pacing(db, "unipile", "acc_p", daily_cap=100, min_spacing_seconds=30)
    db.execute(
        "UPDATE sender_pacing SET last_sent_at = now(), sent_today = 1, day = current_date "
        "WHERE sender_account = 'acc_p'"
    )
    send_id = _queue(db, "d-1")
    _relay_all(db)
    # AND a worker whose claim the pacing refused, and which read "may go in 30 s"
    refused = send_queue.claim(db, send_id)
    assert isinstance(refused, send_queue.NotClaimed) and refused.status == "pending" and refused.due
    assert refused.retry_at is not None
    # WHEN, before its deferral, a provider warning rescheduled the row an hour later (with its record)
    later = datetime.now(UTC) + timedelta(hours=1)
    db.execute("UPDATE send_queue SET scheduled_for = %s WHERE id = %s", (later, send_id))
    db.execute("INSERT INTO send_outbox (send_id, available_at) VALUES (%s, %s)", (send_id, later))
    # AND the worker's deferral then runs with the time it read
    assert send_queue.defer(db, send_id, refused.retry_at) is None
    # THEN the row keeps the later time, and no second record was added for the earlier one
    assert row(db, send_id)["scheduled_for"] == later
    assert _waiting_records(db, send_id) == 1


def test_a_deferral_reads_the_pacing_as_it_is_now(stack, db):
    send_queue.set_pacing(db, "unipile", "acc_p", daily_cap=100, min_spacing_seconds=0)
    send_id = _queue(db, "d-2")
    _relay_all(db)
    # GIVEN the sender paused for 10 minutes after the caller read its pacing
    db.execute("UPDATE sender_pacing SET paused_until = now() + interval '10 minutes' WHERE sender_account = 'acc_p'")
    # WHEN the caller defers with an earlier time
    assert send_queue.defer(db, send_id, datetime.now(UTC) + timedelta(seconds=1)) is not None
    # THEN the row waits for the pause, not for the stale reading
    waits = db.execute("SELECT extract(epoch FROM scheduled_for - now()) FROM send_queue WHERE id = %s", (send_id,))
    assert 590 <= float(waits.fetchone()[0]) <= 600


def test_duplicate_deliveries_of_a_paced_row_add_one_record(stack, db):
    # GIVEN a sender allowed one send every 60 s, that just sent
    send_queue.set_pacing(db, "unipile", "acc_p", daily_cap=100, min_spacing_seconds=60)
    db.execute(
        "UPDATE sender_pacing SET last_sent_at = now(), sent_today = 1, day = current_date "
        "WHERE sender_account = 'acc_p'"
    )
    send_id = _queue(db, "d-3")
    _relay_all(db)
    # WHEN three workers hold copies of the row's message and each finds the pacing says no,
    # all three reading the row as due (the seed's overlapping workers)
    refusals = [send_queue.claim(db, send_id) for _ in range(3)]
    assert all(isinstance(r, send_queue.NotClaimed) and r.due for r in refusals)
    records = [send_queue.defer(db, send_id, r.retry_at) for r in refusals if r.retry_at]
    # THEN the row is deferred once, with one record for then
    assert len([r for r in records if r is not None]) == 1
    assert _waiting_records(db, send_id) == 1
    # AND a later copy sees a row not due: nothing added
    assert deliver(db, send_id) == "not_due"
    assert _waiting_records(db, send_id) == 1
    assert row(db, send_id)["status"] == "pending" and row(db, send_id)["attempts"] == 0


def test_a_daily_cap_of_zero_lets_no_first_send_through(stack, db, monkeypatch):
    # GIVEN new senders default to a daily cap of 0 (the sender has no pacing row yet)
    monkeypatch.setenv("SEND_DAILY_CAP", "0")
    send_id = _queue(db, "z-1", sender="acc_zero")
    # WHEN the worker handles the row
    assert deliver(db, send_id) == "deferred"
    # THEN nothing was claimed or sent, and the row waits for tomorrow
    held = row(db, send_id)
    assert held["status"] == "pending" and held["attempts"] == 0
    assert held["scheduled_for"].astimezone(UTC) > datetime.now(UTC) + timedelta(seconds=1)
    pacing = db.execute("SELECT daily_cap, sent_today FROM sender_pacing WHERE sender_account = 'acc_zero'").fetchone()
    assert pacing == (0, 0)
    assert stack.fakes.count("unipile.send") == 0


def test_a_daily_cap_of_zero_holds_on_a_new_day_too(stack, db):
    # GIVEN a sender capped at 0 whose pacing row dates from yesterday
    send_queue.set_pacing(db, "unipile", "acc_zero", daily_cap=0, min_spacing_seconds=0)
    db.execute("UPDATE sender_pacing SET day = current_date - 1, sent_today = 0 WHERE sender_account = 'acc_zero'")
    send_id = _queue(db, "z-2", sender="acc_zero")
    # WHEN the worker handles the row
    assert deliver(db, send_id) == "deferred"
    # THEN it was not claimed: the cap holds whatever the day
    assert row(db, send_id)["attempts"] == 0
    assert row(db, send_id)["scheduled_for"].date() >= datetime.now(UTC).date()
    assert stack.fakes.count("unipile.send") == 0


def test_a_positive_cap_still_lets_a_new_sender_send(stack, db):
    send_id = _queue(db, "c-1", sender="acc_new")
    assert deliver(db, send_id) == "sent"
    assert db.execute("SELECT sent_today FROM sender_pacing WHERE sender_account = 'acc_new'").fetchone()[0] == 1
