"""Lifecycle notifications acted on, once per notification whatever its re-deliveries.

``reauthorizationRequired`` -> reauthorize now (renew when Graph refuses); ``subscriptionRemoved`` ->
a new subscription, then a resync; ``missed`` -> a resync. Each action is idempotent by state (the
manager acts only while the notification's subscription is still the mailbox's live one; a resync
request is a timestamp), and the notification is recorded in the event log after it, so a
re-delivery finds it settled. The mailbox's claim is the manager's: when a manager run holds it,
the event goes back to the queue for a while (``RetryLaterError``), without failing.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import psycopg

from exactly_once.core import store
from exactly_once.core.errors import PermanentEventError, RetryLaterError
from exactly_once.core.events import InboundEvent
from exactly_once.core.queries import q
from exactly_once.core.telemetry import Metric, counters, logger
from exactly_once.flows.graph import mailboxes
from exactly_once.flows.graph.manager import MailboxBusyError, SubscriptionManager

BUSY_RETRY_SECONDS = 30


class UnmanagedSubscriptionError(PermanentEventError):
    """A notification for a subscription or mailbox the bundle does not manage: never fetched."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        counters.incr("graph", Metric.GRAPH_UNMANAGED)


@functools.cache
def manager() -> SubscriptionManager:
    return SubscriptionManager.from_env()


def managed_mode(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(q("graph_managed_mode")).fetchone()
    return bool(row and row[0])


def mailbox_to_fetch(conn: psycopg.Connection[Any], subscription_id: str, named: str) -> str:
    """The mailbox a notification's mail is fetched from: its subscription's, never one the payload names.

    ``named`` is the user in the notification's resource (an address or Graph's user id); it must be the
    subscription's mailbox. Raises UnmanagedSubscriptionError otherwise (once a mailbox is watched).
    """
    known = mailboxes.known(conn, subscription_id)
    if known is None:
        if not managed_mode(conn):
            return named  # subscriptions made by hand, before any mailbox was configured (README)
        raise UnmanagedSubscriptionError(f"subscription {subscription_id[:64]!r} is not one the bundle manages")
    if not known.watched:
        raise UnmanagedSubscriptionError(f"mailbox {known.mailbox!r} is no longer watched")
    if named.lower() not in {known.mailbox, (known.user_id or "").lower()}:
        raise UnmanagedSubscriptionError("the notification's resource names another mailbox than its subscription")
    return known.mailbox


def act(conn: psycopg.Connection[Any], event: InboundEvent, now: dt.datetime | None = None) -> str:
    seen = store.already_settled(conn, event)
    if seen is not None:
        counters.incr("graph", Metric.DUP_QUEUE)
        return f"duplicate:{seen.outcome}"
    lifecycle = event.kind.split(":", 1)[1]
    subscription_id = str(event.payload.get("subscriptionId") or "")
    known = mailboxes.known(conn, subscription_id)
    if known is None:
        if managed_mode(conn):
            raise UnmanagedSubscriptionError(f"lifecycle {lifecycle} for a subscription the bundle does not manage")
        outcome = "lifecycle_recorded"  # a hand-made subscription: nothing the bundle can act on
    else:
        outcome = _acted(conn, lifecycle, subscription_id, known.mailbox, now or dt.datetime.now(dt.UTC))
    if store.record_event(conn, event, outcome) == 1:
        counters.incr("graph", Metric.LIFECYCLE)
        logger.info("graph lifecycle event", extra={"lifecycle": lifecycle, "outcome": outcome})
    return outcome


def _acted(conn: psycopg.Connection[Any], lifecycle: str, subscription_id: str, mailbox: str, now: dt.datetime) -> str:
    try:
        if lifecycle == "reauthorizationRequired":
            return manager().reauthorize(conn, subscription_id, mailbox)
        if lifecycle == "subscriptionRemoved":
            outcome = manager().replace_removed(conn, subscription_id, mailbox)
            mailboxes.want_resync(conn, mailbox, now)
            return outcome
    except MailboxBusyError as exc:
        raise RetryLaterError("a manager run holds the mailbox", BUSY_RETRY_SECONDS) from exc
    if lifecycle == "missed":
        mailboxes.want_resync(conn, mailbox, now)
        return "resync_requested"
    raise PermanentEventError(f"unknown lifecycle event {lifecycle[:64]!r}")
