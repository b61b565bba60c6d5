"""The LinkedIn send incident's shape on the inbound side: the same Unipile message (and the same Stripe and Slack
events) delivered 20 times from 4 processes at once, then handed to 4 racing workers at once as if
every earlier layer had forgotten it -> one linkedin_messages row, one event_log row each."""

from __future__ import annotations

import time

import pytest

from exactly_once.flows.generic.slack import SlackAdapter
from exactly_once.flows.generic.stripe import StripeAdapter
from exactly_once.flows.unipile.adapter import UnipileAdapter
from exactly_once.ingest.apigw import Request
from tests.generic_support import (
    SLACK_SECRET,
    STRIPE_SECRET,
    UNIPILE_SECRET,
    signed_slack,
    signed_stripe,
    unipile_headers,
    unipile_message,
)
from tests.procs import deliver, run_parallel, work

pytestmark = pytest.mark.slow

BASE = "http://127.0.0.1:3000"
MESSAGES = [f"race-msg-{i}" for i in range(3)]


def test_unipile_messages_delivered_and_worked_in_parallel_are_recorded_once(stack, db):
    bodies = [unipile_message(m) for m in MESSAGES]
    requests = [("POST", f"{BASE}/webhooks/unipile", b, unipile_headers()) for b in bodies]
    # WHEN 4 processes deliver the same 3 messages 5 times each (60 POSTs), all at once
    start = time.time() + 3
    statuses = run_parallel(deliver, [(stack.env, "UnipileIngestFunction", requests * 5, start) for _ in range(4)])
    # THEN every POST got its 200 and ingest let each message through once
    assert [s for per_proc in statuses for s in per_proc] == [200] * 60
    assert stack.queue_depth("EventsQueue") == len(MESSAGES)
    # WHEN 4 workers get every event at the same moment (FIFO dedup and ingest record both gone)
    adapter = UnipileAdapter(UNIPILE_SECRET)
    events = [adapter.split(Request("POST", "/webhooks/unipile", b, unipile_headers(), {})).events[0] for b in bodies]
    start = time.time() + 3
    assert run_parallel(work, [(stack.env, [e.to_message() for e in events], start) for _ in range(4)]) == [0] * 4
    stack.drain()
    # THEN one row per message, each inbound, and every extra copy counted where it was stopped
    assert db.execute("SELECT count(*), count(DISTINCT message_id) FROM linkedin_messages").fetchone() == (3, 3)
    assert {r[0] for r in db.execute("SELECT direction FROM linkedin_messages")} == {"inbound"}
    assert db.execute("SELECT count(*), sum(deliveries) FROM event_log").fetchone() == (3, 3 * 5)


def test_stripe_and_slack_events_raced_by_workers_are_recorded_once(stack, db):
    deliveries = [("/webhooks/stripe", *signed_stripe(f"evt_race_{i}")) for i in range(3)]
    deliveries += [("/webhooks/slack", *signed_slack(f"EvRace{i}")) for i in range(3)]
    requests = [("POST", BASE + path, body, headers) for path, body, headers in deliveries]
    start = time.time() + 3
    statuses = run_parallel(deliver, [(stack.env, "GenericIngestFunction", requests * 3, start) for _ in range(4)])
    assert [s for per_proc in statuses for s in per_proc] == [200] * 72
    assert stack.queue_depth("EventsQueue") == 6
    stripe_adapter, slack_adapter = StripeAdapter([STRIPE_SECRET]), SlackAdapter(SLACK_SECRET)
    messages = [
        (stripe_adapter if path.endswith("stripe") else slack_adapter)
        .split(Request("POST", path, body, headers, {}))
        .events[0]
        .to_message()
        for path, body, headers in deliveries
    ]
    start = time.time() + 3
    assert run_parallel(work, [(stack.env, messages, start) for _ in range(4)]) == [0] * 4
    stack.drain()
    rows = db.execute("SELECT provider, count(*), sum(deliveries) FROM event_log GROUP BY 1 ORDER BY 1").fetchall()
    assert rows == [("slack", 3, 15), ("stripe", 3, 15)]
    assert db.execute("SELECT count(*) FROM event_log WHERE outcome <> 'recorded'").fetchone()[0] == 0
