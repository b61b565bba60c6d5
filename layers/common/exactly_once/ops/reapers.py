"""Reapers: scheduled sweeps that reclaim claims whose lease ran out, and relay what was missed.

Each flow declares its reapers, ``(conn) -> int`` (rows handled), in its ``FLOW``
(``core.declaration.Reaper``); the scheduled ClaimReaperFunction runs them all in the flows' order.

Every reaper runs whatever another one did: a failure (a database error, an SQS or botocore
error, a missing setting, a bug) is logged with the reaper's name, counted as ``ReapersFailed``
under its flow, and the next reaper runs. The counters are flushed at the end in any case, and
the run then raises ReaperRunError, so the invocation still counts as an error (Lambda Errors).

``StaleClaimsReclaimed`` counts only the reapers marked ``reclaims`` (claims taken back from a
worker that died or outlived its lease), under the flow's ``provider`` dimension; the other reapers
(reconciliation, outbox relays, gauges) report through their flow's own metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from exactly_once import providers
from exactly_once.core.declaration import Flow, Part, Reaper
from exactly_once.core.errors import ExactlyOnceError
from exactly_once.core.telemetry import Metric, counters, flushes_metrics, logger

RemainingMs = Callable[[], int]

#: After every flow's reapers: the operations gauges (open quarantine, stuck rows), then retention (batched
#: deletes and redaction of settled rows past their window, ops/retention.py), as their own "flow".
OPERATIONS = Flow(
    "operations",
    reapers=(
        Reaper("operations", Part("exactly_once.ops", "gauges:emit")),
        Reaper("retention", Part("exactly_once.ops", "retention:run"), time_bounded=True),
    ),
)


def registered() -> list[tuple[Flow, Reaper]]:
    """Every reaper in the order it runs: each flow's (``providers.FLOWS``), then the gauges."""
    return [*providers.reapers(), *((OPERATIONS, reaper) for reaper in OPERATIONS.reapers)]


class ReaperRunError(ExactlyOnceError):
    """One or more reapers failed; the others ran. ``results`` holds every reaper's count (-1: failed)."""

    def __init__(self, failed: list[str], results: dict[str, int]) -> None:
        super().__init__(f"reapers failed: {', '.join(failed)}")
        self.failed = failed
        self.results = results


@flushes_metrics
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
    for flow, spec in registered():
        name = spec.name
        if only and name not in only:
            continue
        try:
            reap: Callable[..., int] = spec.run.load()
            if spec.time_bounded and remaining_ms is not None:
                results[name] = reap(conn, remaining_ms=remaining_ms)
            else:
                results[name] = reap(conn)
        except Exception as exc:  # any failure: one reaper's must not skip the others
            logger.exception("reaper failed", extra={"reaper": name, "error": type(exc).__name__})
            counters.incr(flow.name, Metric.REAPERS_FAILED)
            results[name] = -1
            failed.append(name)
            continue
        if spec.reclaims and results[name] > 0:
            counters.incr(flow.name, Metric.RECLAIMED, results[name])
    if failed:
        raise ReaperRunError(failed, results)
    return results
