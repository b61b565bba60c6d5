"""LinkedIn-safe pacing on Postgres (sends/pacing.py, migration 0013): each channel's defaults, working hours
in the sender's time zone, a weekly cap, a spacing drawn with jitter, and caps that hold under racing workers.

Postgres' own clock decides, so the tests choose a time zone in which "now" is the local hour they need."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from exactly_once.sends import pacing
from exactly_once.sends import queue as send_queue
from exactly_once.sends.delivery import deliver
from exactly_once.sends.pacing import PacingRule
from exactly_once.sends.request import SendRequest

ACCOUNT = "acc_li"
ALL_DAYS = (1, 2, 3, 4, 5, 6, 7)


def zone_at_local_hour(hour: int) -> ZoneInfo:
    """A fixed-offset zone in which it is now ``hour`` o'clock (Etc/GMT-5 is UTC+5)."""
    offset = (hour - datetime.now(UTC).hour) % 24
    if offset > 14:
        offset -= 24
    return ZoneInfo(f"Etc/GMT{-offset:+d}")


def configure(db, zone: ZoneInfo, **changes) -> PacingRule:
    rule = pacing.rule_from(changes, PacingRule(daily_cap=40, time_zone=zone.key, work_days=ALL_DAYS))
    send_queue.set_pacing(db, "unipile", ACCOUNT, rule)
    return rule


def next_at(db) -> datetime | None:
    return send_queue.pacing_next(db, "unipile", ACCOUNT)


def queue(db, key: str) -> int:
    with db.transaction():
        return send_queue.enqueue(db, SendRequest(key, "unipile", ACCOUNT, f"chat_{key}", {"text": key})).id


def test_a_new_linkedin_account_gets_the_documented_defaults(stack, db, monkeypatch):
    for name in ("SEND_PACING", "SEND_DAILY_CAP", "SEND_MIN_SPACING_MS"):
        monkeypatch.delenv(name, raising=False)
    deliver(db, queue(db, "first"))  # sent or held back by the hours: either way the row now exists
    row = db.execute(
        "SELECT daily_cap, weekly_cap, min_spacing_seconds, max_spacing_seconds, time_zone, work_start, work_end,"
        " work_days FROM sender_pacing WHERE sender_account = %s",
        (ACCOUNT,),
    ).fetchone()
    assert row == (40, 150, 120.0, 300.0, "UTC", time(9), time(18), [1, 2, 3, 4, 5])
    assert pacing.defaults("whatsapp") == PacingRule(daily_cap=1000)


def test_before_working_hours_the_account_waits_for_the_local_morning(stack, db):
    zone = zone_at_local_hour(3)
    configure(db, zone, work_start=time(9), work_end=time(18))
    local_morning = datetime.combine(datetime.now(zone).date(), time(9), tzinfo=zone)
    assert next_at(db) == local_morning
    # AND a due row of the account is not claimed but deferred to then
    send_id = queue(db, "early")
    assert deliver(db, send_id) == "deferred"
    scheduled = db.execute("SELECT scheduled_for, attempts FROM send_queue WHERE id = %s", (send_id,)).fetchone()
    assert scheduled == (local_morning, 0)
    assert stack.fakes.count("unipile.send") == 0


def test_inside_working_hours_it_sends_and_after_them_it_waits_for_the_next_working_day(stack, db):
    zone = zone_at_local_hour(12)
    configure(db, zone, work_start=time(9), work_end=time(18))
    assert deliver(db, queue(db, "noon")) == "sent"
    # the working day is over: the next one is tomorrow, unless tomorrow is no working day
    today = datetime.now(zone).date()
    day_after = (today + timedelta(days=2)).isoweekday()
    configure(db, zone, work_start=time(6), work_end=time(7), work_days=(day_after,))
    assert next_at(db) == datetime.combine(today + timedelta(days=2), time(6), tzinfo=zone)


def test_no_working_day_at_all_never_sends_and_defers_a_day_not_a_second(stack, db):
    configure(db, zone_at_local_hour(12), work_start=time(9), work_end=time(18))
    db.execute("UPDATE sender_pacing SET work_days = '{}' WHERE sender_account = %s", (ACCOUNT,))
    assert next_at(db) is None
    send_id = queue(db, "never")
    assert deliver(db, send_id) == "deferred"
    wait = db.execute("SELECT scheduled_for - now() FROM send_queue WHERE id = %s", (send_id,)).fetchone()[0]
    assert timedelta(hours=23) < wait <= timedelta(days=1)


def test_the_weekly_cap_holds_the_account_until_its_local_monday(stack, db):
    zone = zone_at_local_hour(12)
    configure(db, zone, weekly_cap=2)
    assert [deliver(db, queue(db, f"w{i}")) for i in range(3)] == ["sent", "sent", "deferred"]
    today = datetime.now(zone).date()
    monday = today + timedelta(days=7 - today.weekday())
    assert next_at(db) == datetime.combine(monday, time(0), tzinfo=zone)
    assert stack.fakes.count("unipile.send") == 2


def test_each_send_draws_its_spacing_between_the_minimum_and_the_maximum(stack, db):
    zone = zone_at_local_hour(12)
    gaps = []
    for i in range(12):
        account = f"acc_jitter_{i}"
        rule = PacingRule(daily_cap=40, min_spacing_seconds=120, max_spacing_seconds=300, time_zone=zone.key)
        send_queue.set_pacing(db, "unipile", account, rule)
        with db.transaction():
            send_id = send_queue.enqueue(db, SendRequest(f"j{i}", "unipile", account, f"chat_j{i}", {"text": "hi"})).id
        assert deliver(db, send_id) == "sent"
        gap = db.execute(
            "SELECT extract(epoch FROM next_send_at - last_sent_at) FROM sender_pacing WHERE sender_account = %s",
            (account,),
        ).fetchone()[0]
        gaps.append(float(gap))
    assert all(120 <= g <= 300 for g in gaps)
    assert len({round(g, 3) for g in gaps}) > 1  # drawn, not fixed


@pytest.mark.parametrize("cap", ["daily_cap", "weekly_cap"])
def test_ten_workers_racing_for_one_accounts_rows_take_no_more_than_its_cap(stack, db, database_url, cap):
    # GIVEN an account allowed 3 sends (by day or by week), no spacing, and 10 due rows of it
    zone = zone_at_local_hour(12)
    configure(db, zone, **({"daily_cap": 3} if cap == "daily_cap" else {"weekly_cap": 3}))
    ids = [queue(db, f"r{i}") for i in range(10)]
    barrier = threading.Barrier(10)
    outcomes: list[str] = []

    def work(send_id: int) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            barrier.wait()
            outcomes.append(deliver(conn, send_id))

    threads = [threading.Thread(target=work, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # THEN no more than three were sent, the rest deferred
    assert len(outcomes) == 10 and set(outcomes) <= {"deferred", "sent"}
    assert outcomes.count("sent") <= 3
    # AND once the deferred rows come due again (a claim that met the pacing row locked by another defers
    # rather than wait, so on a busy machine the race may take fewer than three), the cap is reached exactly
    db.execute("UPDATE send_queue SET scheduled_for = now() WHERE status = 'pending'")
    again = [deliver(db, i) for i in ids]
    assert outcomes.count("sent") + again.count("sent") == 3
    assert stack.fakes.count("unipile.send") == 3
