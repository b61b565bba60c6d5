"""Graph notification -> fetch the mail -> one ticket (or a comment on its thread).

``process`` settles one event; ``process_batch`` settles an SQS batch's Graph events with one
Postgres commit for all their effects (``tickets.apply_mails``) and leaves what it cannot settle
to ``process``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import psycopg

from exactly_once.core import db, deadline, store
from exactly_once.core.crash import crashpoint
from exactly_once.core.errors import PermanentEventError, RetryLaterError
from exactly_once.core.events import InboundEvent
from exactly_once.core.telemetry import Metric, counters, logger
from exactly_once.flows.graph import lifecycle
from exactly_once.flows.graph.client import GraphClient, GraphThrottledError, MailMessage, MessageGoneError
from exactly_once.flows.graph.resync_events import RESYNC_KIND, resync_mail
from exactly_once.flows.graph.tickets import MailOutcome, apply_mail, apply_mails
from exactly_once.sends import queue as send_queue

_RESOURCE = re.compile(r"^/?users/([^/]+)/(?:mailfolders/[^/]+/)?messages/([^/?]+)", re.IGNORECASE)


@functools.cache
def graph() -> GraphClient:
    return GraphClient.from_env()


def process(event: InboundEvent) -> str:
    conn = db.connection()
    outcome = _without_fetch(conn, event)
    if outcome is not None:
        return outcome
    fetched = _fetch(conn, event)
    if isinstance(fetched, str):
        return fetched
    mailbox, mail = fetched
    result = apply_mail(conn, mail, event, mailbox)
    crashpoint("graph.worker.after_commit_one")  # the one-by-one commit (process_batch has its own)
    send_queue.relay_committed([result.read_send] if result.read_send is not None else [], "mark-read")
    return _counted(result)


def process_batch(events: Sequence[tuple[str, InboundEvent]]) -> dict[str, str]:
    """Settle a batch's events (SQS message id, event), in order; their effects commit together.

    A message group stops at its first event this cannot settle (an operator replay, a failed
    fetch, anything that raises): that event and the rest of its group are left to ``process``,
    which the worker runs after this, in order, with the FIFO rules for failures. Returns the
    outcomes of the events settled here.
    """
    conn = db.connection()
    settled: dict[str, str] = {}
    fetched: list[tuple[str, InboundEvent, str, MailMessage]] = []
    stopped: set[str] = set()
    for message_id, event in events:
        if event.group in stopped:
            continue
        if event.replay:
            stopped.add(event.group)
            continue
        prepared = _settle_or_fetch(conn, event)
        if prepared is None:
            stopped.add(event.group)
        elif isinstance(prepared, str):
            settled[message_id] = prepared
        else:
            fetched.append((message_id, event, *prepared))
    if not fetched:
        return settled
    try:
        results = apply_mails(conn, [(mail, event, mailbox) for _, event, mailbox, mail in fetched])
    except psycopg.Error as exc:
        # Not settled here (or not known to be): process() finds a committed effect in the event log.
        logger.warning("batch apply failed, events go one by one", extra={"error": type(exc).__name__})
        return settled
    crashpoint("graph.worker.after_commit")
    send_queue.relay_committed([r.read_send for r in results if r.read_send is not None], "mark-read")
    for (message_id, *_), outcome in zip(fetched, results, strict=True):
        settled[message_id] = _counted(outcome)
    return settled


def _settle_or_fetch(conn: psycopg.Connection[Any], event: InboundEvent) -> tuple[str, MailMessage] | str | None:
    """The outcome, or (mailbox, mail) to apply; None when it raised: process() retries or quarantines it."""
    try:
        outcome = _without_fetch(conn, event)
        return outcome if outcome is not None else _fetch(conn, event)
    except Exception as exc:  # the batch goes on; this event's group is left to process()
        logger.info("left to the one-by-one path", extra={"key": event.key, "error": type(exc).__name__})
        return None


def _without_fetch(conn: psycopg.Connection[Any], event: InboundEvent) -> str | None:
    """The outcome of an event settled without fetching its mail (lifecycle, seen, deleted), else None."""
    if event.kind.startswith("lifecycle:"):
        return lifecycle.act(conn, event)
    seen = store.already_settled(conn, event)
    if seen is not None:
        counters.incr("graph", Metric.DUP_QUEUE)
        logger.info("duplicate stopped", extra={"layer": "worker_event_log", "outcome": seen.outcome})
        return f"duplicate:{seen.outcome}"
    if event.kind == "deleted":
        store.record_event(conn, event, "ignored_deleted")
        return "ignored_deleted"
    return None


def _fetch(conn: psycopg.Connection[Any], event: InboundEvent) -> tuple[str, MailMessage] | str:
    """(mailbox, mail), or the outcome when the mail is gone."""
    if event.kind == RESYNC_KIND:
        return resync_mail(event)  # found by our own delta query: the mail came with it
    match = _RESOURCE.match(str(event.payload.get("resource") or ""))
    if match is None:
        raise PermanentEventError("resource is not Users/{id}/Messages/{id}")
    message_id = match.group(2)
    mailbox = lifecycle.mailbox_to_fetch(conn, str(event.payload.get("subscriptionId") or ""), match.group(1))
    client = graph()
    if not deadline.covers(client.fetch_budget_s):
        # Not started: the invocation's timeout could cut it short. Back on the queue at once, for another one.
        raise RetryLaterError("too little of the invocation left for a Graph fetch", 0)
    try:
        mail = client.get_message(mailbox, message_id)
    except GraphThrottledError as exc:
        if exc.called:
            counters.incr("graph", Metric.GRAPH_THROTTLED)
        logger.info("graph throttled, event deferred", extra={"retry_after": round(exc.wait), "called": exc.called})
        raise RetryLaterError("Graph throttled the mailbox", exc.wait) from exc
    except MessageGoneError:
        store.record_event(conn, event, "message_gone")
        logger.info("mail deleted before fetch", extra={"outcome": "message_gone"})
        return "message_gone"
    crashpoint("graph.worker.after_fetch")
    return mailbox.lower(), mail


def _counted(result: MailOutcome) -> str:
    if result.outcome == "duplicate":
        counters.incr("graph", Metric.DUP_DATABASE)
    elif result.outcome == "recovered":
        counters.incr("graph", Metric.CONSTRAINT_RECOVERED)
    elif result.outcome == "quarantined":
        counters.incr("graph", Metric.QUARANTINED)
    else:
        counters.incr("graph", Metric.EFFECTS)
    return result.outcome
