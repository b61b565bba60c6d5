"""Retention (issue 16, item 17): old rows go in small batches, the dedup record outlives every redelivery window,
open quarantine is never touched, settled quarantine loses its payload first and its row later."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from exactly_once.core.errors import ConfigurationError
from exactly_once.ops import reapers, retention

DAY = "interval '1 day'"


def event(db, key: str, days_ago: float, payload: str = '{"text": "Zoe, +15550100"}') -> None:
    db.execute(
        "INSERT INTO event_log (provider, event_key, kind, outcome, payload, first_seen_at, last_seen_at)"
        f" VALUES ('whatsapp', %s, 'message:text', 'replied', %s, now() - %s * {DAY}, now() - %s * {DAY})",
        (key, payload, days_ago, days_ago),
    )


def quarantined(db, key: str, status: str, days_ago: float) -> int:
    row = db.execute(
        "INSERT INTO quarantine (provider, event_key, reason, raw, envelope, status, created_at, updated_at)"
        f" VALUES ('graph', %s, 'no internetMessageId', '{{\"from\": \"zoe@example.com\"}}', '{{\"k\": 1}}', %s,"
        f" now() - %s * {DAY}, now() - %s * {DAY}) RETURNING id",
        (key, status, days_ago, days_ago),
    ).fetchone()
    return int(row[0])


def keys(db, table: str) -> list[str]:
    return sorted(r[0] for r in db.execute(f"SELECT event_key FROM {table}"))


def test_event_log_keeps_every_row_inside_its_window_and_deletes_the_rest(db):
    # GIVEN events last seen 1, 14, 29 and 31, 60 days ago (the worker's dedup record: event_log)
    for key, age in (("w1", 1), ("w14", 14), ("w29", 29), ("w31", 31), ("w60", 60)):
        event(db, key, age)
    # WHEN the retention reaper runs with the default windows
    removed = retention.run(db)
    # THEN only the rows older than 30 days are gone
    assert keys(db, "event_log") == ["w1", "w14", "w29"]
    assert removed >= 2


def test_open_quarantine_is_never_touched_and_settled_rows_are_redacted_then_deleted(db):
    fresh = quarantined(db, "resolved-2d", "resolved", 2)
    redacted = quarantined(db, "resolved-10d", "resolved", 10)
    replayed = quarantined(db, "replayed-100d", "replayed", 100)
    old_open = quarantined(db, "open-400d", "open", 400)
    db.execute(
        "INSERT INTO replay_log (quarantine_id, provider, event_key, requested_by) VALUES (%s, 'graph', 'k', 'ops')",
        (replayed,),
    )
    retention.run(db)
    rows = {r[0]: r[1:] for r in db.execute("SELECT id, raw, envelope, status FROM quarantine")}
    # an open row waits for a person, whatever its age, with everything it had
    assert rows[old_open] == ('{"from": "zoe@example.com"}', '{"k": 1}', "open")
    # settled for 2 days: kept whole; for 10 days: its payload is gone, the row (key, reason) kept
    assert rows[fresh][0] != retention.REDACTED and rows[fresh][1] is not None
    assert rows[redacted][:2] == (retention.REDACTED, None)
    # settled for 100 days: deleted, with its replay lineage (which referenced it)
    assert replayed not in rows
    assert db.execute("SELECT count(*) FROM replay_log").fetchone()[0] == 0


def test_deletes_go_in_batches_and_skip_rows_a_worker_holds(db, database_url):
    for i in range(25):
        event(db, f"old{i}", 40)
    # a worker holds one old row (its transaction is open): retention must not wait for it
    holder = psycopg.connect(database_url)
    holder.execute("SELECT 1 FROM event_log WHERE event_key = 'old0' FOR UPDATE")
    try:
        started = time.monotonic()
        removed = retention.run(db, batch=10)
        assert time.monotonic() - started < 3
    finally:
        holder.rollback()
        holder.close()
    assert removed == 24 and keys(db, "event_log") == ["old0"]


def test_a_window_shorter_than_the_redelivery_horizon_is_refused(monkeypatch):
    # SQS keeps a dead letter 14 days and Meta retries for 7: the dedup record must outlive both
    monkeypatch.setenv("RETENTION_EVENT_LOG_DAYS", "7")
    with pytest.raises(ConfigurationError, match="RETENTION_EVENT_LOG_DAYS"):
        retention.windows()
    monkeypatch.setenv("RETENTION_EVENT_LOG_DAYS", "0")  # 0: keep forever
    assert retention.windows()["event_log"] == 0


def test_retention_is_a_registered_time_bounded_reaper(db):
    (spec,) = [r for _, r in reapers.registered() if r.name == "retention"]
    assert spec.time_bounded
    event(db, "ancient", 365)
    results = reapers.run_all(db, only=["retention"], remaining_ms=lambda: 60_000)
    assert results["retention"] >= 1 and keys(db, "event_log") == []


def test_out_of_time_it_stops_between_batches(db):
    for i in range(5):
        event(db, f"late{i}", 40)
    assert retention.run(db, batch=1, remaining_ms=lambda: 0) == 0
    assert len(keys(db, "event_log")) == 5


def test_it_runs_while_workers_write(db, database_url):
    # concurrent inserts of fresh events are never blocked or removed
    stop = threading.Event()

    def writer() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            i = 0
            while not stop.is_set():
                event(conn, f"live{i}", 0)
                i += 1

    for i in range(50):
        event(db, f"gone{i}", 45)
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        retention.run(db, batch=7)
    finally:
        stop.set()
        thread.join()
    assert not [k for k in keys(db, "event_log") if k.startswith("gone")]
    assert all(k.startswith("live") for k in keys(db, "event_log"))
