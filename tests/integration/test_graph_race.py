"""The race of the Graph mail incident: the same Graph notification delivered 20 times at once from 4 processes,
a reply mail racing itself, and a re-delivery after the dedup window -> one ticket, one comment."""

from __future__ import annotations

import time

import pytest
import time_machine

from devstack.lambda_runtime import load_handler
from exactly_once.core.events import InboundEvent
from exactly_once.flows.graph.adapter import item_key
from tests.graph_support import HEADERS, URL, add_mail, body, item, post
from tests.procs import deliver, run_parallel, work

pytestmark = pytest.mark.slow


def test_twenty_concurrent_deliveries_a_racing_reply_and_a_late_redelivery_make_one_ticket_one_comment(stack, db):
    add_mail(stack, "m1", "<m1@example.com>", conversation_id="conv-r")
    add_mail(stack, "m2", "<m2@example.com>", conversation_id="conv-r", in_reply_to="<m1@example.com>")
    payload = body(item("m1")).encode()

    # WHEN 4 processes deliver the same notification 5 times each, all at once
    start = time.time() + 3
    statuses = run_parallel(
        deliver, [(stack.env, "GraphIngestFunction", [("POST", URL, payload, HEADERS)] * 5, start) for _ in range(4)]
    )
    # THEN every delivery is acknowledged, and ingest let exactly one through
    assert [s for per_proc in statuses for s in per_proc] == [202] * 20
    assert stack.queue_depth("EventsQueue") == 1
    stack.drain()

    # WHEN the reply is processed by 4 workers at once, each holding a different notification of it
    # (created/updated, several etags): ingest cannot stop these, only Postgres can
    notes = [
        InboundEvent("graph", item_key(it), "graph:mailbox:u", it["changeType"], it).to_message()
        for it in (item("m2", change=c, etag=f'W/"e{i}"') for i, c in enumerate(["created", "updated"] * 4))
    ]
    start = time.time() + 3
    failures = run_parallel(work, [(stack.env, notes[i::4], start) for i in range(4)])
    assert failures == [0, 0, 0, 0]

    # WHEN Graph re-delivers the first notification a day later (past the 24 h ingest window)
    with time_machine.travel(time.time() + 25 * 3600):
        late = post(stack, payload)
    assert late.status == 202 and late.json()["accepted"] == 1  # the window passed: ingest lets it in
    stack.drain()

    # THEN exactly one ticket and one comment, no quarantine
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM ticket_comments").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
    # AND every duplicate that reached Postgres is counted where it was stopped
    outcomes = dict(db.execute("SELECT outcome, count(*) FROM event_log GROUP BY outcome").fetchall())
    assert outcomes == {"ticket": 1, "comment": 1, "duplicate": 7}
    late_delivery = db.execute("SELECT deliveries FROM event_log WHERE outcome = 'ticket'").fetchone()[0]
    assert late_delivery == 2  # the late re-delivery met the event log and stopped there
    # AND Graph was asked for each mail only by workers that could not know better
    assert stack.fakes.count("graph.get_message", "m1") == 1


def test_ingest_crash_between_dedup_and_enqueue_does_not_lose_the_notification(stack, db):
    """SIGKILL after the DynamoDB reservation, before SendMessageBatch: Graph's retry must get through."""
    add_mail(stack, "m9", "<m9@example.com>")
    payload = body(item("m9")).encode()
    env = {**stack.env, "EO_CRASH_AT": "graph.ingest.after_dedup"}
    with pytest.raises(Exception):  # noqa: B017 - the child dies by SIGKILL: BrokenProcessPool
        run_parallel(deliver, [(env, "GraphIngestFunction", [("POST", URL, payload, HEADERS)], time.time())], 1)
    assert stack.queue_depth("EventsQueue") == 0
    # A retry while the dead invocation's reservation is still live is a retryable 503 (not a 202 that loses it)...
    early = post(stack, payload)
    assert early.status == 503 and early.json()["error"] == "in_progress"
    # ...and once the invocation's deadline (its Lambda timeout) has passed, the retry is accepted.
    with time_machine.travel(time.time() + 15):
        retry = post(stack, payload)
    assert retry.json()["accepted"] == 1
    stack.drain()
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1


def test_worker_crash_after_commit_before_ack_is_a_counted_duplicate(stack, db):
    """SIGKILL after the ticket commit, before SQS delete: the redelivered message changes nothing."""
    add_mail(stack, "m7", "<m7@example.com>")
    it = item("m7")
    message = InboundEvent("graph", item_key(it), "graph:mailbox:u", "created", it).to_message()
    env = {**stack.env, "EO_CRASH_AT": "graph.worker.after_commit_one"}
    with pytest.raises(Exception):  # noqa: B017 - BrokenProcessPool from the SIGKILL
        run_parallel(work, [(env, [message], time.time())], 1)
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    # SQS redelivers the message after the visibility timeout
    assert run_parallel(work, [(stack.env, [message], time.time())], 1) == [0]
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert db.execute("SELECT deliveries FROM event_log").fetchone()[0] == 2
    assert load_handler("GraphIngestFunction")  # the handler module still imports after crashes
