"""Retention never removes a dedup record a redelivery can still reach (issue 16, item 17).

For random allowed settings of the event_log window and random ages, on real Postgres: every row last seen
within the floor (15 days: longer than SQS keeps a dead letter and than any provider retries) survives the
retention run, every row past the configured window is gone, and open quarantine rows are never touched."""

from __future__ import annotations

import random

from exactly_once.ops import retention

FLOOR = retention.WINDOWS["event_log"][2]


def test_no_setting_removes_a_record_inside_the_redelivery_horizon(db, monkeypatch, proof):
    rng = random.Random(16)
    rounds, rows, kept_inside, failures = 12, 0, 0, []
    for n in range(rounds):
        db.execute("TRUNCATE event_log, quarantine RESTART IDENTITY CASCADE")
        window = rng.choice([FLOOR, FLOOR + 1, 30, 45, 365])
        monkeypatch.setenv("RETENTION_EVENT_LOG_DAYS", str(window))
        ages = [rng.uniform(0, 2 * window) for _ in range(40)]
        for i, age in enumerate(ages):
            db.execute(
                "INSERT INTO event_log (provider, event_key, kind, outcome, last_seen_at)"
                " VALUES ('p', %s, 'k', 'done', now() - %s * interval '1 day')",
                (f"r{n}-{i}", age),
            )
            db.execute(
                "INSERT INTO quarantine (provider, event_key, reason, raw, created_at, updated_at)"
                " VALUES ('p', %s, 'r', 'body', now() - %s * interval '1 day', now() - %s * interval '1 day')",
                (f"q{n}-{i}", age, age),
            )
        retention.run(db, batch=rng.choice([1, 3, 50]))
        left = {r[0] for r in db.execute("SELECT event_key FROM event_log")}
        open_left = db.execute("SELECT count(*) FROM quarantine WHERE status = 'open' AND raw = 'body'").fetchone()[0]
        for i, age in enumerate(ages):
            key = f"r{n}-{i}"
            inside = age < window - 0.01
            if inside and key not in left:
                failures.append(f"window {window}: a row {age:.2f} days old was deleted")
            if age > window + 0.01 and key in left:
                failures.append(f"window {window}: a row {age:.2f} days old was kept")
            kept_inside += inside and key in left
        if open_left != len(ages):
            failures.append(f"window {window}: open quarantine rows touched ({open_left} of {len(ages)} intact)")
        rows += len(ages)
    assert not failures, failures[:10]
    proof.record(
        kind="hostile",
        flow="operations",
        name="retention vs the dedup window",
        cases=rounds,
        held=(
            f"{rows} event_log rows over {rounds} random windows (floor {FLOOR} days): {kept_inside} inside their "
            f"window all kept, every older one deleted; {rows} open quarantine rows untouched"
        ),
    )
