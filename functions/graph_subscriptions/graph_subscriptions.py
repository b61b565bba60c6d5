"""Scheduled: the Graph subscription manager, then the delta resyncs that are owed.

The manager keeps one live subscription per watched mailbox (GRAPH_MAILBOXES, or `exactly-once graph
watch`); the resyncs queue the mail notifications never announced (after `missed`, a removed
subscription, an outage, or hourly as a safety net). A mailbox's failure is stored, counted and
retried with backoff; the others go on, so the invocation itself fails only on a library bug.
"""

from __future__ import annotations

import functools
from typing import Any

from exactly_once.core import db
from exactly_once.core.telemetry import flushes_metrics, logger
from exactly_once.core.tracing import traced
from exactly_once.flows.graph.manager import SubscriptionManager, utc_now
from exactly_once.flows.graph.resync import Resync


@functools.cache
def _manager() -> SubscriptionManager:
    return SubscriptionManager.from_env()


@functools.cache
def _resync() -> Resync:
    return Resync.from_env(utc_now)


@traced
@logger.inject_lambda_context(clear_state=True)
@flushes_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, dict[str, str]]:
    conn = db.connection()
    subscriptions = _manager().run(conn)
    resyncs = _resync().run_due(conn, getattr(context, "get_remaining_time_in_millis", None))
    logger.info("graph subscriptions managed", extra={"subscriptions": subscriptions, "resyncs": resyncs})
    return {"subscriptions": subscriptions, "resyncs": resyncs}
