"""The subscription manager: one live Graph subscription per watched mailbox, never lapsing.

A run (on a schedule) makes the configured mailboxes watched, then for each mailbox under its claim
(``mailboxes.claim``): creates the missing subscription, renews one within the renewal margin, makes
a new one for a subscription still on a rotated-out clientState, deletes the subscription of a
mailbox no longer watched. The lifecycle actions (``lifecycle.py``) go through the same claim.

Exactly once: a subscription is only ever created under the mailbox's claim and stored fenced on it
(the unique index keeps one active per mailbox in any case). A create whose outcome was never stored
(a crash after Graph answered, a timeout, a claim lost to a slow call) leaves a subscription Graph
knows and the table does not: before creating, the manager lists the app's subscriptions and deletes
those for the mailbox's resource it does not know, so at most one stays live.

Failures (Graph refuses, times out) are stored on the mailbox with a backoff (1 minute doubling to an
hour), counted (``GraphSubscriptionFailures``) and logged; the other mailboxes go on. Each run emits
``GraphSubscriptionsAtRisk``: watched mailboxes without a subscription that lasts 24 hours more, which
the template's alarm pages on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import psycopg

from exactly_once.core.errors import ProviderCallError, ProviderTimeoutError
from exactly_once.core.telemetry import Metric, counters, logger
from exactly_once.flows.graph import mailboxes
from exactly_once.flows.graph.mailboxes import Active, Claim
from exactly_once.flows.graph.subscriptions import SubscriptionsApi, SubscriptionSettings, resource_of

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MailboxBusyError(Exception):
    """Another manager run or lifecycle action holds the mailbox's claim."""


class SubscriptionManager:
    def __init__(self, api: SubscriptionsApi, settings: SubscriptionSettings, clock: Clock = utc_now) -> None:
        self.api = api
        self.settings = settings
        self.clock = clock

    @classmethod
    def from_env(cls, clock: Clock = utc_now) -> SubscriptionManager:
        from exactly_once.flows.graph.client import GraphClient

        return cls(SubscriptionsApi(GraphClient.from_env()), SubscriptionSettings.from_env(), clock)

    def run(self, conn: psycopg.Connection[Any]) -> dict[str, str]:
        """Every mailbox to manage -> what was done (``ok``, ``created``, ``renewed``, ``failed``, ...)."""
        mailboxes.sync_parameter(conn, mailboxes.configured_mailboxes(), mailboxes.default_folder())
        outcomes = {mailbox: self.manage(conn, mailbox) for mailbox in mailboxes.to_manage(conn)}
        counters.incr("graph", Metric.GRAPH_AT_RISK, mailboxes.at_risk(conn, self.clock()))
        return outcomes

    def manage(self, conn: psycopg.Connection[Any], mailbox: str, *, force: bool = False) -> str:
        """Bring one mailbox's subscription to what it should be; ``busy`` when someone else holds it."""
        now = self.clock()
        claim = mailboxes.claim(conn, mailbox, now)
        if claim is None:
            return "busy"
        try:
            if not force and claim.next_attempt_at is not None and claim.next_attempt_at > now:
                return "backoff"
            return self._guarded(conn, claim, now, lambda: self._ensure(conn, claim, now))
        finally:
            mailboxes.release(conn, claim)

    def reauthorize(self, conn: psycopg.Connection[Any], subscription_id: str, mailbox: str) -> str:
        """``reauthorizationRequired``: reauthorize now (renew when Graph refuses); raises MailboxBusyError."""
        return self._on_subscription(conn, subscription_id, mailbox, self._reauthorize)

    def replace_removed(self, conn: psycopg.Connection[Any], subscription_id: str, mailbox: str) -> str:
        """``subscriptionRemoved``: a new subscription, unless this one was already replaced."""
        return self._on_subscription(conn, subscription_id, mailbox, self._replace)

    # -- under the claim ---------------------------------------------------------------
    def _on_subscription(
        self,
        conn: psycopg.Connection[Any],
        subscription_id: str,
        mailbox: str,
        action: Callable[[psycopg.Connection[Any], Claim, Active, dt.datetime], str],
    ) -> str:
        now = self.clock()
        claim = mailboxes.claim(conn, mailbox, now)
        if claim is None:
            raise MailboxBusyError(mailbox)
        try:
            current = mailboxes.active(conn, mailbox)
            if current is None or current.subscription_id != subscription_id or not claim.watched:
                return "already_replaced"  # a re-delivery, or the manager acted first: nothing left to do
            return self._guarded(conn, claim, now, lambda: action(conn, claim, current, now))
        finally:
            mailboxes.release(conn, claim)

    def _guarded(self, conn: psycopg.Connection[Any], claim: Claim, now: dt.datetime, step: Callable[[], str]) -> str:
        try:
            outcome = step()
        except (ProviderCallError, ProviderTimeoutError) as exc:
            failures = mailboxes.failed(conn, claim, _describe(exc), now)
            counters.incr("graph", Metric.GRAPH_SUBSCRIPTION_FAILURES)
            logger.warning(
                "graph subscription work failed",
                extra={"mailbox": claim.mailbox, "failures": failures, "error": _describe(exc)},
            )
            return "failed"
        mailboxes.succeeded(conn, claim)
        return outcome

    def _ensure(self, conn: psycopg.Connection[Any], claim: Claim, now: dt.datetime) -> str:
        current = mailboxes.active(conn, claim.mailbox)
        if not claim.watched:
            if current is None:
                return "unwatched"
            self.api.delete(current.subscription_id)
            mailboxes.retire(conn, current.subscription_id, "deleted", now)
            return "deleted"
        if claim.user_id is None:
            mailboxes.set_user_id(conn, claim, self.api.user_id(claim.mailbox))
        if current is not None and current.expires_at <= now:
            mailboxes.retire(conn, current.subscription_id, "removed", now)  # lapsed: Graph dropped it
            current = None
        if current is None:
            return self._create(conn, claim, now, None)
        if current.client_state_id != self.settings.client_state_id:
            return self._create(conn, claim, now, current)  # clientState rotation: the new one first
        if current.expires_at < now + self.settings.renew_margin:
            return self._renew(conn, claim, current, now)
        return "ok"

    def _renew(self, conn: psycopg.Connection[Any], claim: Claim, current: Active, now: dt.datetime) -> str:
        try:
            expires = self.api.renew(current.subscription_id, self.settings, now)
        except ProviderCallError as exc:
            if exc.status != 404:
                raise
            mailboxes.retire(conn, current.subscription_id, "removed", now)
            self._create(conn, claim, now, None)
            return "recreated"
        mailboxes.renewed(conn, current.subscription_id, expires, now)
        return "renewed"

    def _reauthorize(self, conn: psycopg.Connection[Any], claim: Claim, current: Active, now: dt.datetime) -> str:
        try:
            self.api.reauthorize(current.subscription_id)
        except ProviderCallError as exc:
            if exc.status == 404:
                return self._replace(conn, claim, current, now)
            if exc.status not in (400, 405):
                raise
        return "reauthorized" if self._renew(conn, claim, current, now) == "renewed" else "recreated"

    def _replace(self, conn: psycopg.Connection[Any], claim: Claim, current: Active, now: dt.datetime) -> str:
        mailboxes.retire(conn, current.subscription_id, "removed", now)
        self._create(conn, claim, now, None)
        return "recreated"

    def _create(self, conn: psycopg.Connection[Any], claim: Claim, now: dt.datetime, replaces: Active | None) -> str:
        resource = resource_of(claim.mailbox, claim.folder)
        keep = replaces.subscription_id if replaces else None
        for sub in self.api.list():
            if (
                str(sub.get("resource", "")).lower() == resource.lower()
                and sub.get("notificationUrl") == self.settings.notification_url
                and sub.get("id") != keep
            ):
                self.api.delete(str(sub["id"]))  # an orphan of a create whose outcome was never stored
        created = self.api.create(self.settings, resource, now)
        stored = mailboxes.record_created(
            conn,
            claim,
            subscription_id=created.subscription_id,
            resource=resource,
            client_state_id=self.settings.client_state_id,
            expires_at=created.expires_at,
            now=now,
            replaces=keep,
        )
        if not stored:  # the claim ran out under a slow call and someone else holds the mailbox now
            self.api.delete(created.subscription_id)
            return "claim_lost"
        if keep:
            self.api.delete(keep)
            return "rotated"
        return "created"


def _describe(exc: Exception) -> str:
    """What to store and log: the status and Graph's error code, never a token or a header."""
    if isinstance(exc, ProviderCallError):
        return f"HTTP {exc.status}: {exc.body[:300]}"
    return f"{type(exc).__name__}: no answer"
