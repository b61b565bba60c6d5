"""The Graph subscription manager against the fake Graph over HTTP (which validates the endpoint as Graph does)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from exactly_once.flows.graph import mailboxes
from exactly_once.flows.graph.manager import SubscriptionManager
from exactly_once.flows.graph.subscriptions import client_state_id
from tests.graph_endpoint import notification_endpoint

A, B = "alice@contoso.test", "bob@contoso.test"


class MovedClock:
    """The manager's clock and the fake Graph's, moved together."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def move(self, delta: dt.timedelta) -> None:
        self.offset += delta
        self.stack.fakes.state["setup:graph_subscriptions"]({"clock": self.offset.total_seconds()})


@pytest.fixture
def graph(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, MovedClock]]:
    monkeypatch.setenv("GRAPH_MAILBOXES", f"{A}, {B.upper()}")
    with notification_endpoint(stack, monkeypatch):
        yield stack, MovedClock(stack)


def live(stack: Any) -> dict[str, dict[str, Any]]:
    """The fake Graph's subscriptions by resource."""
    return {s["resource"]: s for s in stack.fakes.state["graph_subscriptions"].values()}


def test_a_run_subscribes_each_configured_mailbox_once_after_graph_validated_the_endpoint(graph, db):
    stack, clock = graph
    # WHEN the manager runs twice
    first = SubscriptionManager.from_env(clock).run(db)
    second = SubscriptionManager.from_env(clock).run(db)
    # THEN each mailbox got one subscription (Graph validated the endpoint for each), then nothing changed
    assert first == {A: "created", B.lower(): "created"}
    assert second == {A: "ok", B.lower(): "ok"}
    assert stack.fakes.count("graph.subscription.create") == 2
    subs = live(stack)
    assert sorted(subs) == [
        f"users/{A}/mailFolders('inbox')/messages",
        f"users/{B.lower()}/mailFolders('inbox')/messages",
    ]
    assert all(s["lifecycleNotificationUrl"] == s["notificationUrl"] for s in subs.values())
    rows = db.execute("SELECT mailbox, subscription_id, status FROM graph_subscriptions ORDER BY mailbox").fetchall()
    assert [(r[0], r[2]) for r in rows] == [(A, "active"), (B.lower(), "active")]
    assert {r[1] for r in rows} == {s["id"] for s in subs.values()}


def test_a_subscription_within_the_margin_is_renewed_and_a_lapsed_one_recreated(graph, db):
    stack, clock = graph
    manager = SubscriptionManager.from_env(clock)
    manager.run(db)
    before = {s["id"]: s["expirationDateTime"] for s in live(stack).values()}
    # WHEN five days pass (inside the 72 h margin of a ~7 day subscription)
    clock.move(dt.timedelta(days=5))
    assert manager.run(db) == {A: "renewed", B.lower(): "renewed"}
    after = {s["id"]: s["expirationDateTime"] for s in live(stack).values()}
    # THEN the same subscriptions last longer
    assert after.keys() == before.keys() and all(after[k] > before[k] for k in before)
    # WHEN the manager does not run for eight days (Graph drops both)
    clock.move(dt.timedelta(days=8))
    assert manager.run(db) == {A: "created", B.lower(): "created"}
    assert stack.fakes.count("graph.subscription.lapsed") == 2
    assert len(live(stack)) == 2
    statuses = db.execute("SELECT status, count(*) FROM graph_subscriptions GROUP BY 1 ORDER BY 1").fetchall()
    assert statuses == [("active", 2), ("removed", 2)]


def test_a_mailbox_no_longer_configured_has_its_subscription_deleted(graph, db, monkeypatch):
    stack, clock = graph
    SubscriptionManager.from_env(clock).run(db)
    monkeypatch.setenv("GRAPH_MAILBOXES", A)
    assert SubscriptionManager.from_env(clock).run(db) == {A: "ok", B.lower(): "deleted"}
    assert list(live(stack)) == [f"users/{A}/mailFolders('inbox')/messages"]
    assert stack.fakes.count("graph.subscription.delete") == 1


def test_a_refused_create_is_stored_backed_off_counted_then_retried(graph, db):
    stack, clock = graph
    stack.fakes.behaviours["graph.subscription.create"] = _failing(2, 403)
    manager = SubscriptionManager.from_env(clock)
    # WHEN Graph refuses both creates
    assert manager.run(db) == {A: "failed", B.lower(): "failed"}
    row = db.execute(
        "SELECT failures, last_error, next_attempt_at FROM graph_mailboxes WHERE mailbox = %s", (A,)
    ).fetchone()
    # THEN the error is stored with a backoff, and the next run inside it does not call Graph
    assert row[0] == 1 and row[1].startswith("HTTP 403") and row[2] > clock()
    assert manager.run(db) == {A: "backoff", B.lower(): "backoff"}
    assert stack.fakes.count("graph.subscription.create") == 2
    # AND the at-risk gauge counts both mailboxes until a run after the backoff subscribes them
    assert mailboxes.at_risk(db, clock()) == 2
    clock.move(dt.timedelta(minutes=2))
    assert manager.run(db) == {A: "created", B.lower(): "created"}
    assert db.execute("SELECT max(failures) FROM graph_mailboxes").fetchone() == (0,)


def test_an_endpoint_that_fails_validation_gets_no_subscription(graph, db, monkeypatch):
    stack, clock = graph
    monkeypatch.setenv("GRAPH_NOTIFICATION_URL", "http://127.0.0.1:9/webhooks/graph")  # nothing listens there
    assert SubscriptionManager.from_env(clock).run(db) == {A: "failed", B.lower(): "failed"}
    assert live(stack) == {}
    assert (
        "ValidationError" in db.execute("SELECT last_error FROM graph_mailboxes WHERE mailbox = %s", (A,)).fetchone()[0]
    )


def test_an_orphan_of_a_create_never_stored_is_deleted_before_the_next_create(graph, db):
    stack, clock = graph
    manager = SubscriptionManager.from_env(clock)
    manager.run(db)
    # GIVEN a run that created a subscription in Graph and died before storing it
    db.execute("DELETE FROM graph_subscriptions WHERE mailbox = %s", (A,))
    # WHEN the manager runs again
    assert manager.run(db)[A] == "created"
    # THEN Graph holds one subscription for the mailbox, the stored one
    subs = [s for s in live(stack).values() if A in s["resource"]]
    assert len(subs) == 1
    assert db.execute("SELECT subscription_id FROM graph_subscriptions WHERE mailbox = %s", (A,)).fetchone() == (
        subs[0]["id"],
    )


def test_a_clientstate_rotation_replaces_each_subscription_once(graph, db, monkeypatch):
    stack, clock = graph
    SubscriptionManager.from_env(clock).run(db)
    old = stack.env["GRAPH_CLIENT_STATE"]
    # WHEN the secret rotates (the old one kept as previous while subscriptions move)
    monkeypatch.setenv("GRAPH_CLIENT_STATE", "rotated-client-state-9876543210")
    monkeypatch.setenv("GRAPH_CLIENT_STATE_PREVIOUS", old)
    assert SubscriptionManager.from_env(clock).run(db) == {A: "rotated", B.lower(): "rotated"}
    assert SubscriptionManager.from_env(clock).run(db) == {A: "ok", B.lower(): "ok"}
    # THEN Graph holds one subscription per mailbox, on the new clientState
    assert len(live(stack)) == 2
    assert {s["clientState"] for s in live(stack).values()} == {"rotated-client-state-9876543210"}
    ids = {r[0] for r in db.execute("SELECT client_state_id FROM graph_subscriptions WHERE status = 'active'")}
    assert ids == {client_state_id("rotated-client-state-9876543210")}


def _failing(times: int, status: int) -> Any:
    from devstack.fakes import Behaviour

    return Behaviour(fail_times=times, fail_status=status)
