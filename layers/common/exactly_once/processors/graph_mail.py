"""Graph notification -> fetch the mail -> one ticket (or a comment on its thread)."""

from __future__ import annotations

import functools
import re

from exactly_once import db, store
from exactly_once.crash import crashpoint
from exactly_once.errors import PermanentEventError
from exactly_once.events import InboundEvent
from exactly_once.graph_client import GraphClient, MessageGoneError
from exactly_once.telemetry import Metric, counters, logger
from exactly_once.tickets import apply_mail

_RESOURCE = re.compile(r"^/?users/([^/]+)/(?:mailfolders/[^/]+/)?messages/([^/?]+)", re.IGNORECASE)


@functools.cache
def graph() -> GraphClient:
    return GraphClient.from_env()


def process(event: InboundEvent) -> str:
    conn = db.connection()
    if event.kind.startswith("lifecycle:"):
        return _lifecycle(event)
    seen = store.already_settled(conn, event)
    if seen is not None:
        counters.incr("graph", Metric.DUP_QUEUE)
        logger.info("duplicate stopped", extra={"layer": "worker_event_log", "outcome": seen.outcome})
        return f"duplicate:{seen.outcome}"
    if event.kind == "deleted":
        store.record_event(conn, event, "ignored_deleted")
        return "ignored_deleted"
    match = _RESOURCE.match(str(event.payload.get("resource") or ""))
    if match is None:
        raise PermanentEventError("resource is not Users/{id}/Messages/{id}")
    mailbox, message_id = match.group(1), match.group(2)
    try:
        mail = graph().get_message(mailbox, message_id)
    except MessageGoneError:
        store.record_event(conn, event, "message_gone")
        logger.info("mail deleted before fetch", extra={"outcome": "message_gone"})
        return "message_gone"
    crashpoint("graph.worker.after_fetch")
    result = apply_mail(conn, mail, event, mailbox.lower())
    crashpoint("graph.worker.after_commit")
    if result.outcome == "duplicate":
        counters.incr("graph", Metric.DUP_DATABASE)
    elif result.outcome == "recovered":
        counters.incr("graph", Metric.CONSTRAINT_RECOVERED)
    elif result.outcome == "quarantined":
        counters.incr("graph", Metric.QUARANTINED)
    else:
        counters.incr("graph", Metric.EFFECTS)
    return result.outcome


def _lifecycle(event: InboundEvent) -> str:
    """Recorded and counted; ``missed`` and ``subscriptionRemoved`` ask for a resync, so they warn."""
    conn = db.connection()
    times = store.record_event(conn, event, "lifecycle_recorded")
    if times == 1:
        counters.incr("graph", Metric.LIFECYCLE)
        lifecycle = event.kind.split(":", 1)[1]
        log = logger.warning if lifecycle in ("missed", "subscriptionRemoved") else logger.info
        log(
            "graph lifecycle event", extra={"lifecycle": lifecycle, "subscription": event.payload.get("subscriptionId")}
        )
    return "lifecycle_recorded"
