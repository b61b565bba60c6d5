"""Retention: settled rows past their window are deleted (or stripped of the provider's body) in small batches.

Run by the reaper run (``ClaimReaperFunction``, every minute) as the ``retention`` reaper, after every flow's.
Each batch is one short statement in its own transaction: oldest rows first, at most ``batch`` of them,
rows a worker holds skipped (``SKIP LOCKED``), so no delete waits on a lock or holds many for long; a run
stops between batches when the invocation's time runs low, and the next run goes on.

What goes, and when (days; ``RETENTION_*_DAYS``, 0 keeps forever; docs/security.md):

- ``event_log`` rows last seen more than ``RETENTION_EVENT_LOG_DAYS`` (30) ago. They are the worker's dedup
  record, so the window has a floor of 15 days: longer than SQS keeps a dead letter (14 days, then
  ``dlq replay``), Meta retries (7 days) and every ingest dedup window. A shorter setting stops the run.
- ``quarantine`` rows a person settled (resolved, or replayed): their raw body and envelope are replaced
  after ``RETENTION_QUARANTINE_PAYLOAD_DAYS`` (7; key, reason and notes stay), the row and the replay
  lineage that names it go after ``RETENTION_QUARANTINE_DAYS`` (90). Open rows are never touched.
- ``replay_log`` rows of dead-letter replays (no quarantine row): after ``RETENTION_QUARANTINE_DAYS``.
- ``console_actions`` (the console's Idempotency-Key records) after ``RETENTION_CONSOLE_ACTIONS_DAYS`` (30).

The flows' own tables (tickets, processed mails, WhatsApp messages, sends, feedback, ...) are the effects
and the unique keys that stop a second one: they are kept, and docs/security.md says why.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from exactly_once.core.errors import ConfigurationError
from exactly_once.core.queries import q
from exactly_once.core.settings import env_int
from exactly_once.core.telemetry import Metric, counters, logger

RemainingMs = Callable[[], int]

#: What a redacted quarantine row's ``raw`` holds.
REDACTED = "[redacted by retention]"
#: Stop taking batches when the invocation has less than this left (ms).
RESERVE_MS = 5_000

#: window name -> (variable, default days, floor days)
WINDOWS: dict[str, tuple[str, int, int]] = {
    "event_log": ("RETENTION_EVENT_LOG_DAYS", 30, 15),
    "quarantine_payload": ("RETENTION_QUARANTINE_PAYLOAD_DAYS", 7, 1),
    "quarantine": ("RETENTION_QUARANTINE_DAYS", 90, 1),
    "console_actions": ("RETENTION_CONSOLE_ACTIONS_DAYS", 30, 1),
}


@dataclass(frozen=True)
class Step:
    query: str
    window: str
    metric: str


STEPS = (
    Step("retention_event_log", "event_log", Metric.RETENTION_DELETED),
    Step("retention_quarantine_redact", "quarantine_payload", Metric.RETENTION_REDACTED),
    Step("retention_quarantine", "quarantine", Metric.RETENTION_DELETED),
    Step("retention_replay_log", "quarantine", Metric.RETENTION_DELETED),
    Step("retention_console_actions", "console_actions", Metric.RETENTION_DELETED),
)


def windows() -> dict[str, int]:
    """Each window in days from the environment (0: keep forever); ConfigurationError under a floor."""
    found: dict[str, int] = {}
    for name, (variable, default, floor) in WINDOWS.items():
        days = env_int(variable, default)
        if days < 0 or 0 < days < floor:
            raise ConfigurationError(f"{variable} must be 0 (keep forever) or at least {floor} days, got {days}")
        found[name] = days
    return found


def run(
    conn: psycopg.Connection[Any],
    *,
    batch: int = 1000,
    max_batches: int = 50,
    remaining_ms: RemainingMs | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Delete or redact what is past its window, batch by batch; return the rows handled."""
    limits = windows()
    now = now or dt.datetime.now(dt.UTC)
    total = 0
    for step in STEPS:
        days = limits[step.window]
        if not days:
            continue
        params = {"cutoff": now - dt.timedelta(days=days), "batch": batch, "redacted": REDACTED}
        for _ in range(max_batches):
            if remaining_ms is not None and remaining_ms() < RESERVE_MS:
                logger.info("retention paused: out of time", extra={"rows": total, "step": step.query})
                return total
            with conn.transaction():
                done = conn.execute(q(step.query), params).rowcount
            if done > 0:
                total += done
                counters.incr("operations", step.metric, done)
            if done < batch:
                break
    return total
