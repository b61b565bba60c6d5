"""Graph subscriptions: managers racing lifecycle notifications keep one live subscription per mailbox, a
week on a moved clock never lets one lapse, and `missed` re-delivered amid live notifications makes one
ticket per mail."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest

from exactly_once.flows.graph.manager import SubscriptionManager
from exactly_once.flows.graph.resync import Resync
from tests.graph_endpoint import notification_endpoint
from tests.graph_support import add_mail, body, item, post
from tests.harness import TEST_SECRETS
from tests.proofs.concurrency_support import run_counted

pytestmark = pytest.mark.slow

BOX = "helpdesk@contoso.test"
MANAGERS = 3  # processes each running the scheduled manager, several times over
WORKERS = 3  # processes each settling every lifecycle notification, as racing event workers
RUNS = 5


def _race(env: dict[str, str], role: str, bodies: list[str], start_at: float) -> int:
    """In a spawned process: manager runs, or the worker on every lifecycle message until each settles."""
    import os

    os.environ.update(env)
    from devstack.lambda_runtime import LambdaContext, add_code_paths, fifo_message, load_handler, sqs_event

    add_code_paths()
    from exactly_once.core import db
    from exactly_once.flows.graph.manager import SubscriptionManager

    time.sleep(max(0.0, start_at - time.time()))
    if role == "manager":
        for _ in range(RUNS):
            SubscriptionManager.from_env().run(db.connection())
        return 0
    handler = load_handler("EventWorkerFunction")
    retries = 0
    for message in bodies:
        for _ in range(200):  # a lifecycle action deferred while a manager holds the mailbox comes back
            event = sqs_event([fifo_message(message)], "arn:aws:sqs:us-east-1:000000000000:EventsQueue.fifo")
            try:
                if not handler(event, LambdaContext("EventWorkerFunction", timeout_s=60))["batchItemFailures"]:
                    break
            except Exception:  # a batch of one that failed fails the invocation; SQS gives it back
                pass
            retries += 1
            time.sleep(0.05)
    return retries


def _lifecycle(sub: str, event: str, n: int) -> dict[str, Any]:
    return {
        "subscriptionId": sub,
        "subscriptionExpirationDateTime": f"2026-12-1{n}T00:00:00Z",  # n: distinct notifications, not re-deliveries
        "tenantId": "t",
        "clientState": TEST_SECRETS["GRAPH_CLIENT_STATE"],
        "lifecycleEvent": event,
    }


def _queued_bodies(stack: Any) -> list[str]:
    sqs, url = stack.sqs(), stack.aws.physical["EventsQueue"]
    bodies: list[str] = []
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        bodies += [m["Body"] for m in msgs]
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)]
        )
    return bodies


def _graph_subscriptions(stack: Any) -> list[dict[str, Any]]:
    return [s for s in stack.fakes.state["graph_subscriptions"].values() if BOX in s["resource"]]


def test_managers_racing_lifecycle_notifications_leave_one_live_subscription(stack, db, proof, monkeypatch):
    monkeypatch.setenv("GRAPH_MAILBOXES", BOX)
    with notification_endpoint(stack, monkeypatch) as url:
        assert SubscriptionManager.from_env().run(db) == {BOX: "created"}
        first = _graph_subscriptions(stack)[0]["id"]
        # GIVEN Graph dropped the subscription, and told us so (subscriptionRemoved) along with
        # reauthorizationRequired and missed, each as several distinct notifications
        stack.fakes.state["setup:graph_subscriptions"]({"remove": first})
        events = [_lifecycle(first, e, n) for n in range(3) for e in ("subscriptionRemoved", "reauthorizationRequired")]
        events += [_lifecycle(first, "missed", 0)]
        assert post(stack, json.dumps({"value": events})).status == 202
        bodies = _queued_bodies(stack)
        assert len(bodies) == len(events)
        # WHEN managers in several processes run while workers in others settle every notification at once
        env = {**stack.env, "GRAPH_NOTIFICATION_URL": url, "GRAPH_MAILBOXES": BOX}
        start = time.time() + 3.0
        roles = [("manager", [])] * MANAGERS + [("worker", bodies)] * WORKERS
        retried = run_counted(_race, [(env, role, b, start) for role, b in roles], processes=MANAGERS + WORKERS)
        # AND the scheduled manager runs once more afterwards
        assert SubscriptionManager.from_env().run(db)[BOX] in ("ok", "created")
    # THEN Graph holds one subscription for the mailbox, the one stored as active, not the removed one
    live = _graph_subscriptions(stack)
    active = db.execute("SELECT subscription_id FROM graph_subscriptions WHERE status = 'active'").fetchall()
    assert len(live) == 1 and active == [(live[0]["id"],)] and live[0]["id"] != first
    creates = stack.fakes.count("graph.subscription.create")
    settled = db.execute("SELECT count(*) FROM event_log WHERE kind LIKE 'lifecycle:%%'").fetchone()[0]
    assert settled == len(events) and creates == 2
    proof.record(
        kind="concurrency",
        flow="graph",
        name=f"{MANAGERS} manager processes x {RUNS} runs racing {WORKERS} workers settling "
        + f"{len(events)} lifecycle notifications for one mailbox",
        cases=len(events) * WORKERS + MANAGERS * RUNS,
        held=f"{len(live)} live subscription in Graph = the 1 stored active; {creates} creates in all "
        + f"(1 + the replacement); {settled} notifications settled once; {sum(retried)} deferrals retried",
    )


class _MovedClock:
    """The manager's clock and the fake Graph's, moved together."""

    def __init__(self, stack: Any) -> None:
        self.stack, self.offset = stack, dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def move(self, delta: dt.timedelta) -> None:
        self.offset += delta
        self.stack.fakes.state["setup:graph_subscriptions"]({"clock": self.offset.total_seconds()})


def test_a_week_on_a_moved_clock_never_lets_a_subscription_lapse(stack, db, proof, monkeypatch):
    boxes = [BOX, "sales@contoso.test"]
    monkeypatch.setenv("GRAPH_MAILBOXES", ",".join(boxes))
    step, days = dt.timedelta(minutes=30), 8
    with notification_endpoint(stack, monkeypatch):
        clock = _MovedClock(stack)
        manager = SubscriptionManager.from_env(clock)
        outcomes: dict[str, int] = {}
        shortest = dt.timedelta.max
        runs = 0
        # WHEN the scheduled manager runs every 30 minutes for 8 days of the fake's and the manager's time
        while clock.offset < dt.timedelta(days=days):
            for outcome in manager.run(db).values():
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            runs += 1
            # THEN after every run each mailbox has a subscription in Graph that outlives the next run
            live = {s["resource"]: s for s in stack.fakes.state["graph_subscriptions"].values()}
            assert len(live) == len(boxes)
            for sub in live.values():
                left = dt.datetime.fromisoformat(sub["expirationDateTime"].replace("Z", "+00:00")) - clock()
                assert left > step
                shortest = min(shortest, left)
            clock.move(step)
    lapsed = stack.fakes.count("graph.subscription.lapsed")
    assert lapsed == 0 and outcomes.get("created") == len(boxes) and outcomes.get("renewed", 0) >= 2 * len(boxes)
    proof.record(
        kind="clock",
        flow="graph",
        name=f"{days} days on a moved clock, the manager every {int(step.total_seconds() // 60)} min, "
        + f"{len(boxes)} mailboxes",
        cases=runs,
        held=f"{lapsed} lapsed; {outcomes.get('renewed', 0)} renewals, {outcomes.get('created', 0)} creates; "
        + f"shortest time left after a run {shortest.total_seconds() / 3600:.0f} h",
    )


def test_missed_redelivered_amid_live_notifications_makes_one_ticket_per_mail(stack, db, proof, monkeypatch):
    monkeypatch.setenv("GRAPH_MAILBOXES", BOX)
    with notification_endpoint(stack, monkeypatch):
        SubscriptionManager.from_env().run(db)
    sub = db.execute("SELECT subscription_id FROM graph_subscriptions").fetchone()[0]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    mails = [f"r{i}" for i in range(30)]
    for mid in mails:
        add_mail(stack, mid, f"<{mid}@example.com>", user=BOX, conversation_id=f"conv-{mid}")
        stack.fakes.state["graph_messages"][(BOX, mid)]["receivedDateTime"] = now
    live = [dict(item(m, user=BOX), subscriptionId=sub) for m in mails]
    missed = _lifecycle(sub, "missed", 0)
    resync = Resync.from_env(lambda: dt.datetime.now(dt.UTC))
    resync.page_size = 7
    # WHEN `missed` is delivered five times, interleaved with live notifications (twice each) and resyncs
    results = []
    for round_ in range(5):
        assert post(stack, json.dumps({"value": [missed]})).status == 202
        assert post(stack, body(*live[round_ * 6 : round_ * 6 + 12])).status == 202
        stack.drain()
        results += resync.run_due(db).values()
    results.append(resync.resync(db, BOX))
    stack.drain()
    # THEN every mail is one ticket, the lifecycle event settled once
    tickets = dict(db.execute("SELECT external_message_id, count(*) FROM tickets GROUP BY 1").fetchall())
    assert tickets == {f"<{m}@example.com>": 1 for m in mails}
    assert db.execute("SELECT deliveries FROM event_log WHERE kind = 'lifecycle:missed'").fetchall() == [(1,)]
    queued = sum(int(r.split(":")[1]) for r in results if r.startswith("done:"))
    proof.record(
        kind="interleaved",
        flow="graph",
        name=f"`missed` delivered 5 times amid live notifications for {len(mails)} mails, resyncs in between",
        cases=len(mails),
        held=f"{len(tickets)}/{len(mails)} mails -> 1 ticket each; {queued} mails queued by resyncs; "
        + "the lifecycle event settled once",
    )
