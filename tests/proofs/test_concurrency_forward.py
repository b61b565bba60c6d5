"""Forwarding: 100 copies of one settled event's queue message race 4 event worker processes, then 100 copies of
its forward's send message race 4 send worker processes -> one forward row, one delivery at the receiver."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.forward_support import KIND, deliver, enable, forwards, received
from tests.proofs.concurrency_support import COPIES, PROCESSES, THREADS, worker_storm

pytestmark = pytest.mark.slow


def test_racing_workers_settle_one_event_and_the_receiver_gets_one_delivery(stack, db, proof, monkeypatch):
    enable(stack, monkeypatch)
    # GIVEN one accepted event, its queue message taken off the queue to be handed out 100 times
    key = deliver(stack, f"fwd-race-{uuid.uuid4().hex[:8]}")
    queue = stack.aws.physical["EventsQueue"]
    (message,) = stack.sqs().receive_message(QueueUrl=queue)["Messages"]
    stack.sqs().delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    # WHEN 4 event worker processes settle the 100 copies at the same moment
    events = worker_storm(stack.env, message["Body"])
    assert sum(events.statuses) == 0 and len(events.statuses) == COPIES and events.in_flight >= 2
    # THEN one forward row, whatever the number of settles
    rows = forwards(db)
    assert len(rows) == 1 and rows[0]["idempotency_key"] == f"forward:{key}"
    assert db.execute("SELECT deliveries FROM event_log").fetchone()[0] == COPIES
    # WHEN 4 send worker processes each get 25 copies of the forward's queue message at once
    body = json.dumps({"send_id": rows[0]["id"], "outbox_id": rows[0]["id"]})
    sends = worker_storm(stack.env, body, function="SendWorkerFunction")
    stack.drain("SendWorkerFunction", "SendQueue")
    # THEN the receiver got one delivery, signed, under the event key; the row says sent
    assert sum(sends.statuses) == 0 and sends.in_flight >= 2
    deliveries = stack.fakes.count(KIND)
    assert deliveries == 1 and [r["id"] for r in received(stack)] == [key] and stack.fakes.refused(KIND) == 0
    assert forwards(db)[0]["status"] == "sent"
    proof.record(
        kind="concurrency",
        flow="forward",
        name=f"{COPIES} copies of one event racing {PROCESSES} event worker processes x {THREADS} threads, then "
        f"{COPIES} copies of its forward racing {PROCESSES} send worker processes",
        cases=len(events.statuses) + len(sends.statuses),
        held=f"{len(rows)} forward row, {deliveries} delivery at the fake receiver (webhook-id = the event key); "
        f"{events.in_flight} settles and {sends.in_flight} sends in flight at once",
    )
