"""Operations gauges, emitted every minute by the reaper run: open quarantine and stuck rows per flow.

The last reaper of every run (``reapers.OPERATIONS``). A gauge is emitted every run, zero
included, so an alarm on it can tell "nothing stuck" from "the reaper stopped"; the open-quarantine
gauge of every provider declared ``gauged`` is emitted even when it is empty. It handles no rows
itself and returns 0.
"""

from __future__ import annotations

from typing import Any

import psycopg

from exactly_once.core.queries import q
from exactly_once.core.telemetry import Metric, counters, logger
from exactly_once.providers import PROVIDERS


def gauged() -> set[str]:
    """Every provider whose quarantine the dashboard shows even when it is empty."""
    return {p.name for p in PROVIDERS.values() if p.gauged}


def emit(conn: psycopg.Connection[Any]) -> int:
    with conn.transaction():
        open_rows = {str(p): int(n) for p, n in conn.execute(q("ops_open_quarantine")).fetchall()}
        stuck = {str(f): int(n) for f, n in conn.execute(q("ops_stuck_rows")).fetchall()}
    for provider in sorted(gauged() | set(open_rows)):
        counters.incr(provider, Metric.OPEN_QUARANTINE, open_rows.get(provider, 0))
    for flow, count in stuck.items():
        counters.incr(flow, Metric.STUCK_ROWS, count)
        if count:
            logger.warning("rows stuck for more than 5 minutes", extra={"provider": flow, "stuck": count})
    return 0
