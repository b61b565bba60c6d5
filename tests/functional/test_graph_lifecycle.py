"""Lifecycle notifications acted on once, and notifications the bundle does not manage kept, never fetched.

Each case delivers the notification twice over HTTP (ingest dedup) and then hands the worker the same
queued event twice more, as after the dedup window: the action happens once, whatever the re-deliveries.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.fakes import Behaviour
from exactly_once.flows.graph import mailboxes
from exactly_once.flows.graph.manager import SubscriptionManager, utc_now
from exactly_once.flows.graph.resync import Resync
from tests.graph_endpoint import notification_endpoint
from tests.graph_support import add_mail, body, item, post
from tests.harness import TEST_SECRETS

BOX = "helpdesk@contoso.test"
OTHER = "ceo@contoso.test"
REDELIVERIES = 2  # worker deliveries of the same queued event past ingest's dedup


@pytest.fixture
def watched(stack: Any, db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """A watched mailbox with its live subscription (made by the manager, validated by the fake Graph)."""
    monkeypatch.setenv("GRAPH_MAILBOXES", BOX)
    with notification_endpoint(stack, monkeypatch):
        assert SubscriptionManager.from_env().run(db) == {BOX: "created"}
        yield stack, db.execute("SELECT subscription_id FROM graph_subscriptions").fetchone()[0]


def _lifecycle(sub: str, event: str) -> dict[str, Any]:
    return {
        "subscriptionId": sub,
        "subscriptionExpirationDateTime": "2026-12-10T00:00:00Z",
        "tenantId": "t",
        "clientState": TEST_SECRETS["GRAPH_CLIENT_STATE"],
        "lifecycleEvent": event,
    }


def _deliver(stack: Any, payload: str) -> None:
    """Two HTTP deliveries, then the queued event handed to the worker 1 + REDELIVERIES times."""
    assert post(stack, payload).status == 202
    assert post(stack, payload).json()["duplicates"] >= 1
    sqs, url = stack.sqs(), stack.aws.physical["EventsQueue"]
    queued: list[dict[str, Any]] = []
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages"):
        queued += msgs
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert queued, "ingest queued nothing"
    for _ in range(1 + REDELIVERIES):
        for m in queued:
            group = m["Attributes"]["MessageGroupId"]
            sqs.send_message(
                QueueUrl=url, MessageBody=m["Body"], MessageGroupId=group, MessageDeduplicationId=str(uuid.uuid4())
            )
        stack.drain()


def _metric(capsys: Any, name: str) -> float:
    total = 0.0
    for line in capsys.readouterr().out.splitlines():
        if '"_aws"' in line:
            value = json.loads(line).get(name)
            total += sum(value) if isinstance(value, list) else float(value or 0)
    return total


def _settled(db: Any, kind: str) -> list[tuple[str, int]]:
    return db.execute("SELECT outcome, deliveries FROM event_log WHERE kind = %s", (kind,)).fetchall()


def test_reauthorization_required_reauthorizes_the_live_subscription_once(watched, db):
    stack, sub = watched
    before = stack.fakes.state["graph_subscriptions"][sub]["expirationDateTime"]
    # WHEN Graph asks for reauthorization, and the notification comes again and again
    _deliver(stack, body(_lifecycle(sub, "reauthorizationRequired")))
    # THEN the subscription was reauthorized (and renewed) once, and stays the mailbox's one
    assert stack.fakes.count("graph.subscription.reauthorize") == 1
    assert stack.fakes.count("graph.subscription.renew") == 1
    assert stack.fakes.count("graph.subscription.create") == 1
    assert stack.fakes.state["graph_subscriptions"][sub]["expirationDateTime"] >= before
    assert _settled(db, "lifecycle:reauthorizationRequired")[0][0] == "reauthorized"
    assert db.execute("SELECT subscription_id, status FROM graph_subscriptions").fetchall() == [(sub, "active")]


def test_reauthorization_graph_refuses_renews_instead(watched, db):
    stack, sub = watched
    # GIVEN Graph refuses the reauthorize call (400: not for this subscription)
    stack.fakes.behaviours["graph.subscription.reauthorize"] = Behaviour(fail_times=5, fail_status=400)
    _deliver(stack, body(_lifecycle(sub, "reauthorizationRequired")))
    # THEN one attempt, then one renewal by PATCH; no new subscription
    assert stack.fakes.count("graph.subscription.reauthorize") == 1
    assert stack.fakes.count("graph.subscription.renew") == 1
    assert stack.fakes.count("graph.subscription.create") == 1
    assert _settled(db, "lifecycle:reauthorizationRequired")[0][0] == "reauthorized"
    renewed = db.execute("SELECT renewed_at IS NOT NULL FROM graph_subscriptions WHERE subscription_id = %s", (sub,))
    assert renewed.fetchone() == (True,)


def test_subscription_removed_recreates_once_then_the_resync_finds_the_mail(watched, db, monkeypatch):
    stack, sub = watched
    for n in range(4):
        add_mail(stack, f"lost{n}", f"<lost{n}@example.com>", user=BOX, conversation_id=f"c{n}")
        stack.fakes.state["graph_messages"][(BOX, f"lost{n}")]["receivedDateTime"] = utc_now().strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    # GIVEN Graph dropped the subscription and says so
    stack.fakes.state["setup:graph_subscriptions"]({"remove": sub})
    with notification_endpoint(stack, monkeypatch):  # the new subscription is validated too
        _deliver(stack, body(_lifecycle(sub, "subscriptionRemoved")))
    # THEN one new subscription, stored active; the old one removed; a resync asked for
    assert stack.fakes.count("graph.subscription.create") == 2
    rows = dict(db.execute("SELECT subscription_id, status FROM graph_subscriptions").fetchall())
    (new,) = [s for s, status in rows.items() if status == "active"]
    assert rows[sub] == "removed" and new in stack.fakes.state["graph_subscriptions"]
    assert _settled(db, "lifecycle:subscriptionRemoved") == [("recreated", 1 + REDELIVERIES)]  # seen, acted once
    assert db.execute("SELECT resync_wanted_at IS NOT NULL FROM graph_mailboxes").fetchone() == (True,)
    # AND the scheduled resync turns the mails nobody was told about into one ticket each
    assert Resync.from_env(utc_now).run_due(db)[BOX] == "done:4"
    stack.drain()
    assert db.execute("SELECT count(*) FROM tickets").fetchone() == (4,)


def _quarantined(db: Any) -> list[str]:
    return [r[0] for r in db.execute("SELECT reason FROM quarantine WHERE provider = 'graph' ORDER BY id")]


def test_a_notification_for_a_subscription_the_bundle_does_not_manage_is_kept_not_fetched(watched, db, capsys):
    stack, _ = watched
    add_mail(stack, "m1", "<m1@example.com>", user=BOX)
    capsys.readouterr()
    _deliver(stack, body(dict(item("m1", user=BOX), subscriptionId="made-by-someone-else")))
    assert _quarantined(db) == ["subscription 'made-by-someone-else' is not one the bundle manages"]
    assert stack.fakes.count("graph.get_message") == 0
    assert db.execute("SELECT count(*) FROM tickets").fetchone() == (0,)
    assert _metric(capsys, "GraphUnmanagedNotifications") == 1


def test_a_notification_for_an_unwatched_mailbox_is_kept_not_fetched(watched, db, capsys):
    stack, sub = watched
    add_mail(stack, "m1", "<m1@example.com>", user=BOX)
    mailboxes.watch(db, OTHER, "inbox")  # managed mode stays on after the mailbox is unwatched
    assert mailboxes.unwatch(db, BOX)
    capsys.readouterr()
    _deliver(stack, body(dict(item("m1", user=BOX), subscriptionId=sub)))
    assert _quarantined(db) == [f"mailbox '{BOX}' is no longer watched"]
    assert stack.fakes.count("graph.get_message") == 0
    assert _metric(capsys, "GraphUnmanagedNotifications") == 1


def test_a_notification_whose_resource_names_another_mailbox_is_kept_not_fetched(watched, db, capsys):
    stack, sub = watched
    add_mail(stack, "m1", "<m1@example.com>", user=OTHER)
    capsys.readouterr()
    # GIVEN a holder of the clientState naming another mailbox under the bundle's subscription
    _deliver(stack, body(dict(item("m1", user=OTHER), subscriptionId=sub)))
    assert _quarantined(db) == ["the notification's resource names another mailbox than its subscription"]
    assert stack.fakes.count("graph.get_message") == 0
    assert _metric(capsys, "GraphUnmanagedNotifications") == 1
