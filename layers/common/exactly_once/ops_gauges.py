"""Operations gauges, emitted every minute by the reaper run: open quarantine and stuck rows per flow.

Registered in ``reaper.REAPERS`` as ``operations``. A gauge is emitted every run, zero
included, so an alarm on it can tell "nothing stuck" from "the reaper stopped".
It handles no rows itself and returns 0 (``run_all`` counts a reaper's rows as reclaimed).
"""

from __future__ import annotations

from typing import Any

import psycopg

from exactly_once.queries import q
from exactly_once.telemetry import Metric, counters, logger

# Every provider whose quarantine the dashboard shows even when it is empty.
KNOWN_PROVIDERS = ("graph", "livekit", "whatsapp", "unipile", "mailbox", "send_queue")


def emit(conn: psycopg.Connection[Any]) -> int:
    with conn.transaction():
        open_rows = {str(p): int(n) for p, n in conn.execute(q("ops_open_quarantine")).fetchall()}
        stuck = {str(f): int(n) for f, n in conn.execute(q("ops_stuck_rows")).fetchall()}
    for provider in sorted(set(KNOWN_PROVIDERS) | set(open_rows)):
        counters.incr(provider, Metric.OPEN_QUARANTINE, open_rows.get(provider, 0))
    for flow, count in stuck.items():
        counters.incr(flow, Metric.STUCK_ROWS, count)
        if count:
            logger.warning("rows stuck for more than 5 minutes", extra={"provider": flow, "stuck": count})
    return 0
