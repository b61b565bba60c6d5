"""Reapers: scheduled sweeps that reclaim claims whose lease ran out, and relay what was missed.

Each flow registers one function ``(conn) -> int`` (rows handled) in REAPERS;
the scheduled ClaimReaperFunction runs them all, each in its own transaction.

Every reaper runs whatever another one did: a failure (a database error, an SQS or botocore
error, a missing setting, a bug) is logged with the reaper's name, counted as ``ReapersFailed``
under its flow, and the next reaper runs. The counters are flushed at the end in any case, and
the run then raises ReaperRunError, so the invocation still counts as an error (Lambda Errors).

``StaleClaimsReclaimed`` counts only the reapers in RECLAIMS (claims taken back from a worker
that died or outlived its lease), under the flow's ``provider`` dimension; the other reapers
(reconciliation, outbox relays, gauges) report through their flow's own metrics.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import psycopg

from exactly_once.errors import ExactlyOnceError
from exactly_once.telemetry import Metric, counters, logger

Reaper = Callable[..., int]  # (conn) -> rows handled; those in TIME_BOUNDED also take remaining_ms=
RemainingMs = Callable[[], int]

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

# name -> the flow's ``provider`` dimension (the one its other metrics use).
FLOWS: dict[str, str] = {
    "mailbox_jobs": "mailbox",
    "livekit_feedback": "livekit",
    "send_leases": "send_queue",
    "send_reconcile": "send_queue",
    "send_outbox": "send_queue",
    "send_stuck": "send_queue",
    "operations": "operations",
}

# The reapers whose count is claims taken back (StaleClaimsReclaimed): expired mailbox jobs,
# reset LiveKit feedback claims, send leases that ran out (-> unknown).
RECLAIMS = frozenset({"mailbox_jobs", "livekit_feedback", "send_leases"})

# The reapers that bound their work by the invocation's remaining time (keyword remaining_ms).
TIME_BOUNDED = frozenset({"send_reconcile"})


class ReaperRunError(ExactlyOnceError):
    """One or more reapers failed; the others ran. ``results`` holds every reaper's count (-1: failed)."""

    def __init__(self, failed: list[str], results: dict[str, int]) -> None:
        super().__init__(f"reapers failed: {', '.join(failed)}")
        self.failed = failed
        self.results = results


def flow_of(name: str) -> str:
    return FLOWS.get(name, name)


def run_all(
    conn: psycopg.Connection[Any],
    only: list[str] | None = None,
    *,
    remaining_ms: RemainingMs | None = None,
) -> dict[str, int]:
    """Run every registered reaper (or ``only`` these), in order; raise ReaperRunError after all ran
    if any failed. ``remaining_ms`` (the Lambda context's get_remaining_time_in_millis) bounds the
    reapers that can stop early, so the ones after them always run."""
    results: dict[str, int] = {}
    failed: list[str] = []
    try:
        for name, path in REAPERS.items():
            if only and name not in only:
                continue
            try:
                module, _, attr = path.partition(":")
                reaper: Reaper = getattr(importlib.import_module(module), attr)
                if name in TIME_BOUNDED and remaining_ms is not None:
                    results[name] = reaper(conn, remaining_ms=remaining_ms)
                else:
                    results[name] = reaper(conn)
            except Exception as exc:  # any failure: one reaper's must not skip the others
                logger.exception("reaper failed", extra={"reaper": name, "error": type(exc).__name__})
                counters.incr(flow_of(name), Metric.REAPERS_FAILED)
                results[name] = -1
                failed.append(name)
                continue
            if name in RECLAIMS and results[name] > 0:
                counters.incr(flow_of(name), Metric.RECLAIMED, results[name])
    finally:
        counters.flush()
    if failed:
        raise ReaperRunError(failed, results)
    return results
