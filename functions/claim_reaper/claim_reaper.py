"""Scheduled: reclaims expired claims and relays missed outbox rows (every registered reaper).

Every reaper runs even when one fails; a failure makes the invocation fail at the end (after
the counters are flushed), so Lambda's Errors metric sees it. The reconciliation stops taking
rows while the others still have time to run (the context's remaining time).
"""

from __future__ import annotations

from typing import Any

from exactly_once.core import db
from exactly_once.core.telemetry import logger
from exactly_once.core.tracing import traced
from exactly_once.ops.reapers import ReaperRunError, run_all


@traced
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    try:
        results = run_all(db.connection(), remaining_ms=remaining)
    except ReaperRunError as exc:
        logger.error("reapers ran, some failed", extra={"results": exc.results, "failed": exc.failed})
        raise
    logger.info("reapers ran", extra={"results": results})
    return results
