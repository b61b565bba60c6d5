"""Reapers: scheduled sweeps that reclaim claims whose lease ran out, and relay what was missed.

Each flow registers one function ``(conn) -> int`` (rows handled) in REAPERS;
the scheduled ClaimReaperFunction runs them all, each in its own transaction.

Every reaper runs whatever another one did: a failure (a database error, an SQS or botocore
error, a missing setting, a bug) is logged with the reaper's name, counted as ``ReapersFailed``
under its flow, and the next reaper runs. The counters are flushed at the end in any case, and
the run then raises ReaperRunError, so the invocation still counts as an error (Lambda Errors).

``StaleClaimsReclaimed`` counts only the reapers marked ``reclaims`` (claims taken back from a
worker that died or outlived its lease), under the flow's ``provider`` dimension; the other reapers
(reconciliation, outbox relays, gauges) report through their flow's own metrics.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from exactly_once.errors import ExactlyOnceError
from exactly_once.telemetry import Metric, counters, logger

RemainingMs = Callable[[], int]


@dataclass(frozen=True)
class Reaper:
    """One registered reaper: ``path`` names ``(conn) -> rows handled`` as "module:function"."""

    path: str
    flow: str  # the ``provider`` dimension its flow's other metrics use
    reclaims: bool = False  # its count is claims taken back (StaleClaimsReclaimed)
    time_bounded: bool = False  # it takes ``remaining_ms=`` and stops early, so the later ones run


# Run in this order, each imported when it runs.
REAPERS: dict[str, Reaper] = {
    "mailbox_jobs": Reaper("exactly_once.mailbox_jobs:expire_stale", "mailbox", reclaims=True),
    "livekit_feedback": Reaper("exactly_once.feedback_reaper:reap", "livekit", reclaims=True),
    # send queue, in this order: dead claims -> unknown, unknown -> reconciled, outbox sweep, the gauge
    "send_leases": Reaper("exactly_once.send_reconcile:expire_leases", "send_queue", reclaims=True),
    "send_reconcile": Reaper("exactly_once.send_reconcile:reconcile_unknown", "send_queue", time_bounded=True),
    "send_outbox": Reaper("exactly_once.send_reconcile:sweep_outbox", "send_queue"),
    "send_stuck": Reaper("exactly_once.send_reconcile:stuck_rows", "send_queue"),
    # gauges for the operations alarms and dashboard: open quarantine, stuck rows of the other flows
    "operations": Reaper("exactly_once.ops_gauges:emit", "operations"),
}


class ReaperRunError(ExactlyOnceError):
    """One or more reapers failed; the others ran. ``results`` holds every reaper's count (-1: failed)."""

    def __init__(self, failed: list[str], results: dict[str, int]) -> None:
        super().__init__(f"reapers failed: {', '.join(failed)}")
        self.failed = failed
        self.results = results


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
        for name, spec in REAPERS.items():
            if only and name not in only:
                continue
            try:
                module, _, attr = spec.path.partition(":")
                reap: Callable[..., int] = getattr(importlib.import_module(module), attr)
                if spec.time_bounded and remaining_ms is not None:
                    results[name] = reap(conn, remaining_ms=remaining_ms)
                else:
                    results[name] = reap(conn)
            except Exception as exc:  # any failure: one reaper's must not skip the others
                logger.exception("reaper failed", extra={"reaper": name, "error": type(exc).__name__})
                counters.incr(spec.flow, Metric.REAPERS_FAILED)
                results[name] = -1
                failed.append(name)
                continue
            if spec.reclaims and results[name] > 0:
                counters.incr(spec.flow, Metric.RECLAIMED, results[name])
    finally:
        counters.flush()
    if failed:
        raise ReaperRunError(failed, results)
    return results
