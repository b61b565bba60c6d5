"""Reapers: scheduled sweeps that reclaim claims whose lease ran out, and relay what was missed.

Each flow registers one function ``(conn) -> int`` (rows handled) in REAPERS;
the scheduled ClaimReaperFunction runs them all, each in its own transaction.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import psycopg

from exactly_once.telemetry import Metric, counters, logger

Reaper = Callable[[psycopg.Connection[Any]], int]

# name -> "module:function", imported when the reaper runs.
REAPERS: dict[str, str] = {
    "mailbox_jobs": "exactly_once.mailbox_jobs:expire_stale",
    "livekit_feedback": "exactly_once.feedback_reaper:reap",
    # send queue, in this order: dead claims -> unknown, unknown -> reconciled, outbox sweep, the gauge
    "send_leases": "exactly_once.send_reconcile:expire_leases",
    "send_reconcile": "exactly_once.send_reconcile:reconcile_unknown",
    "send_outbox": "exactly_once.send_reconcile:sweep_outbox",
    "send_stuck": "exactly_once.send_reconcile:stuck_rows",
    # gauges for the operations alarms and dashboard: open quarantine, stuck rows of the other flows
    "operations": "exactly_once.ops_gauges:emit",
}


def run_all(conn: psycopg.Connection[Any], only: list[str] | None = None) -> dict[str, int]:
    results: dict[str, int] = {}
    for name, path in REAPERS.items():
        if only and name not in only:
            continue
        module, _, attr = path.partition(":")
        reaper: Reaper = getattr(importlib.import_module(module), attr)
        try:
            results[name] = reaper(conn)
        except psycopg.Error:
            logger.exception("reaper failed", extra={"reaper": name})
            results[name] = -1
            continue
        if results[name]:
            counters.incr(name, Metric.RECLAIMED, results[name])
    counters.flush()
    return results
