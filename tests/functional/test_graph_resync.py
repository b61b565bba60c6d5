"""Missed mail found again by the delta resync, queued through the worker: one ticket per mail, whatever the overlap."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from devstack.fakes import Behaviour
from exactly_once.core import db as core_db
from exactly_once.flows.graph import mailboxes
from exactly_once.flows.graph.manager import SubscriptionManager, utc_now
from exactly_once.flows.graph.resync import Resync
from tests.graph_endpoint import notification_endpoint
from tests.graph_support import add_mail, body, item, post
from tests.harness import TEST_SECRETS

BOX = "helpdesk@contoso.test"


def _mails(stack: Any, first: int, count: int) -> list[str]:
    ids = [f"r{i}" for i in range(first, first + count)]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for mid in ids:
        add_mail(stack, mid, f"<{mid}@example.com>", user=BOX, conversation_id=f"conv-{mid}")
        stack.fakes.state["graph_messages"][(BOX, mid)]["receivedDateTime"] = now
    return ids


def _resync(page_size: int = 10) -> Resync:
    resync = Resync.from_env(utc_now)
    resync.page_size = page_size
    return resync


def _tickets(db: Any) -> int:
    return int(db.execute("SELECT count(*) FROM tickets").fetchone()[0])


def test_a_resync_pages_to_the_delta_link_then_finds_only_new_mail(stack, db):
    _mails(stack, 0, 25)
    mailboxes.watch(db, BOX, "inbox")
    # WHEN the first resync runs (pages of 10) and the worker drains the queue
    assert _resync().resync(db, BOX) == "done:25"
    stack.drain()
    # THEN each mail is one ticket, after three delta pages
    assert _tickets(db) == 25
    assert stack.fakes.count("graph.messages.delta") == 3
    assert stack.fakes.count("graph.get_message") == 0  # the pages carried the mails
    # WHEN three mails arrive and a resync runs from the stored delta link
    _mails(stack, 25, 3)
    assert _resync().resync(db, BOX) == "done:3"
    stack.drain()
    assert _tickets(db) == 28
    # AND a resync with nothing new queues nothing
    assert _resync().resync(db, BOX) == "done:0"


def test_a_page_that_fails_midway_resumes_from_the_stored_link_nothing_lost_or_doubled(stack, db):
    _mails(stack, 0, 30)
    mailboxes.watch(db, BOX, "inbox")
    resync = _resync()
    # GIVEN Graph answers the first page, then throttles the second (Retry-After 7 s: over the in-process cap, no retry)
    original = resync._page
    pages = {"n": 0}

    def page(link: str) -> dict[str, Any]:
        pages["n"] += 1
        if pages["n"] == 2:
            stack.fakes.behaviours["graph.throttle"] = Behaviour(fail_times=1, fail_status=429)
        return original(link)

    resync._page = page  # type: ignore[method-assign]
    assert resync.resync(db, BOX) == "failed"
    row = db.execute("SELECT page_link IS NOT NULL, delta_link, resync_error FROM graph_mailboxes").fetchone()
    assert row == (True, None, "HTTP 429")
    # WHEN the next run resumes and the worker drains
    assert _resync().resync(db, BOX) == "done:20"
    stack.drain()
    # THEN every mail is one ticket
    assert _tickets(db) == 30
    assert db.execute("SELECT resynced_mails FROM graph_mailboxes").fetchone() == (30,)


def test_missed_delivered_three_times_with_live_notifications_makes_one_ticket_per_mail(stack, db, monkeypatch):
    monkeypatch.setenv("GRAPH_MAILBOXES", BOX)
    with notification_endpoint(stack, monkeypatch):
        SubscriptionManager.from_env().run(db)
    sub = db.execute("SELECT subscription_id FROM graph_subscriptions").fetchone()[0]
    ids = _mails(stack, 0, 12)
    # WHEN live notifications arrive for half the mails, and `missed` three times
    live = [dict(item(m, user=BOX), subscriptionId=sub) for m in ids[:6]]
    missed = {
        "subscriptionId": sub,
        "subscriptionExpirationDateTime": "2026-12-10T00:00:00Z",
        "tenantId": "t",
        "clientState": TEST_SECRETS["GRAPH_CLIENT_STATE"],
        "lifecycleEvent": "missed",
    }
    for _ in range(3):
        assert post(stack, json.dumps({"value": [missed]})).status == 202
    assert post(stack, body(*live)).json()["accepted"] == 6
    stack.drain()
    # THEN the lifecycle event asked for one resync (recorded once) ...
    assert db.execute("SELECT outcome, deliveries FROM event_log WHERE kind = 'lifecycle:missed'").fetchall() == [
        ("resync_requested", 1)
    ]
    assert db.execute("SELECT resync_wanted_at IS NOT NULL FROM graph_mailboxes").fetchone() == (True,)
    # ... which the scheduled run does, twice over for good measure, while live notifications repeat
    assert _resync().run_due(db)[BOX] == "done:12"
    post(stack, body(*live))
    assert _resync().resync(db, BOX) == "done:0"
    stack.drain()
    assert _tickets(db) == 12
    assert db.execute("SELECT count(DISTINCT external_message_id) FROM tickets").fetchone() == (12,)
    assert db.execute("SELECT resync_wanted_at FROM graph_mailboxes").fetchone() == (None,)
    core_db.reset()
