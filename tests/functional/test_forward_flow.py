"""Forwarding settled events end to end: the real ingest, event worker and send worker on moto and Postgres,
and a fake receiver over HTTP that verifies each delivery's Standard Webhooks signature and counts it."""

from __future__ import annotations

import json
import time
import uuid

from devstack.lambda_runtime import LambdaContext, sqs_event
from tests.forward_support import KIND, deliver, enable, forwards, received
from tests.send_support import behave, post_send, reap, send_body


def drain_all(stack) -> None:
    stack.drain()
    stack.drain("SendWorkerFunction", "SendQueue")


def test_forwarding_is_off_unless_a_url_is_configured(stack, db):
    deliver(stack, f"off-{uuid.uuid4().hex[:8]}")
    drain_all(stack)
    assert db.execute("SELECT count(*) FROM event_log").fetchone()[0] == 1
    assert forwards(db) == [] and stack.fakes.count(KIND) == 0


def test_a_settled_event_reaches_the_receiver_once_signed_with_its_key(stack, db, monkeypatch):
    enable(stack, monkeypatch)
    event_id = f"evt-{uuid.uuid4().hex[:8]}"
    # GIVEN a provider that delivers an event and retries it
    key = deliver(stack, event_id)
    deliver(stack, event_id)
    # WHEN the event worker settles it and the send worker forwards it
    drain_all(stack)
    # THEN one forward, sent, and one delivery the receiver verified, its webhook-id the event key
    rows = forwards(db)
    assert [(r["idempotency_key"], r["status"], r["policy"]) for r in rows] == [
        (f"forward:{key}", "sent", "at_least_once")
    ]
    (got,) = received(stack)
    assert got["id"] == key and stack.fakes.refused(KIND) == 0
    assert got["body"]["type"].startswith("standard.") and got["body"]["data"]["key"] == key
    assert got["body"]["data"]["payload"] and got["body"]["timestamp"].endswith("Z")
    ledger = db.execute("SELECT provider_message_id FROM sent_messages WHERE channel = 'forward'").fetchall()
    assert ledger == [(key,)]


def test_an_event_settled_again_as_a_duplicate_queues_no_second_forward(stack, db, monkeypatch):
    enable(stack, monkeypatch)
    key = deliver(stack, f"dup-{uuid.uuid4().hex[:8]}")
    (message,) = stack.sqs().receive_message(QueueUrl=stack.aws.physical["EventsQueue"])["Messages"]
    worker = stack.handler("EventWorkerFunction")
    # WHEN the same queue message is settled twice (SQS re-delivers it after a lost delete)
    for _ in range(2):
        event = sqs_event([message], stack.aws.arns["EventsQueue"])
        assert worker(event, LambdaContext(function_name="EventWorkerFunction"))["batchItemFailures"] == []
    # as Lambda does after a success (left in flight, it would come back in a later test)
    stack.sqs().delete_message(QueueUrl=stack.aws.physical["EventsQueue"], ReceiptHandle=message["ReceiptHandle"])
    stack.drain("SendWorkerFunction", "SendQueue")
    # THEN the event log saw it twice, and one forward reached the receiver
    assert db.execute("SELECT deliveries FROM event_log").fetchone()[0] == 2
    assert len(forwards(db)) == 1 and [r["id"] for r in received(stack)] == [key]


def test_a_receiver_error_is_sent_again_with_the_same_webhook_id_never_reviewed(stack, db, monkeypatch):
    enable(stack, monkeypatch)
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    behave(stack, KIND, fail_times=1, fail_status=503)
    key = deliver(stack, f"err-{uuid.uuid4().hex[:8]}")
    drain_all(stack)
    # the 503 may have followed the receiver's own processing: unknown, then a resend (at_least_once)
    assert forwards(db)[0]["status"] == "unknown" and stack.fakes.count(KIND) == 1 and received(stack) == []
    assert reap(["send_reconcile"]) == {"send_reconcile": 1}
    stack.drain("SendWorkerFunction", "SendQueue")
    assert forwards(db)[0]["status"] == "sent"
    assert stack.fakes.count(KIND, key) == 2 and stack.fakes.delivered(KIND, key) == 1
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0


def test_a_timeout_after_the_receiver_took_it_resends_the_same_webhook_id(stack, db, monkeypatch):
    enable(stack, monkeypatch)
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    monkeypatch.setenv("SEND_PROVIDER_TIMEOUT_SECONDS", "1")
    behave(stack, KIND, hang=2.0, hang_times=1)
    key = deliver(stack, f"slow-{uuid.uuid4().hex[:8]}")
    drain_all(stack)
    assert forwards(db)[0]["status"] == "unknown"
    time.sleep(1.5)  # the hung answer lands at the receiver
    reap(["send_reconcile"])
    stack.drain("SendWorkerFunction", "SendQueue")
    # THEN the receiver got it twice, under one webhook-id: its dedup keeps one
    assert [r["id"] for r in received(stack)] == [key, key]
    assert forwards(db)[0]["status"] == "sent"


def test_a_rate_limited_forward_waits_the_retry_after_then_goes(stack, db, monkeypatch):
    enable(stack, monkeypatch)
    monkeypatch.setenv("SEND_RELAY_GRACE_SECONDS", "0")
    behave(stack, KIND, fail_times=1, fail_status=429)
    key = deliver(stack, f"slow-{uuid.uuid4().hex[:8]}")
    drain_all(stack)
    assert forwards(db)[0]["status"] == "pending" and received(stack) == []
    time.sleep(1.2)  # Retry-After: 1
    reap(["send_outbox"])
    stack.drain("SendWorkerFunction", "SendQueue")
    assert forwards(db)[0]["status"] == "sent" and [r["id"] for r in received(stack)] == [key]


def test_a_refused_forward_fails_and_the_operator_replays_it(stack, db, monkeypatch):
    from exactly_once.core import db as library_db
    from exactly_once.sends import forward
    from exactly_once.sends import queue as send_queue

    enable(stack, monkeypatch)
    behave(stack, KIND, fail_times=1, fail_status=400)
    key = deliver(stack, f"bad-{uuid.uuid4().hex[:8]}")
    drain_all(stack)
    (row,) = forwards(db)
    assert row["status"] == "failed" and received(stack) == []
    # WHEN the operator replays the failed forwards (the receiver is fixed)
    ids = forward.replay(library_db.connection(), note="receiver fixed", by="test")
    assert ids == [row["id"]] and forward.replay(library_db.connection(), note="again", by="test") == []
    send_queue.relay(ids)
    stack.drain("SendWorkerFunction", "SendQueue")
    assert forwards(db)[0]["status"] == "sent" and [r["id"] for r in received(stack)] == [key]


def test_only_the_configured_providers_are_forwarded(stack, db, monkeypatch):
    enable(stack, monkeypatch, FORWARD_PROVIDERS="stripe")
    deliver(stack, f"filtered-{uuid.uuid4().hex[:8]}")
    drain_all(stack)
    assert db.execute("SELECT count(*) FROM event_log").fetchone()[0] == 1 and forwards(db) == []


def test_callers_of_post_sends_cannot_queue_a_forward(stack, db):
    answer = post_send(stack, send_body("x", channel="forward"), key="fwd-1")
    assert answer.status == 400 and answer.json()["error"] == "internal_channel"
    assert forwards(db) == []


def test_a_graph_batch_settled_at_once_forwards_each_event_once(stack, db, monkeypatch):
    from tests.functional.test_graph_batch import OTHER, queue_messages, run_batch
    from tests.graph_support import add_mail, item

    enable(stack, monkeypatch)
    add_mail(stack, "a1", "<a1@example.com>", conversation_id="conv-a")
    add_mail(stack, "e1", "<e1@example.com>", user=OTHER, conversation_id="conv-e")
    messages = queue_messages(item("a1"), item("e1", user=OTHER), item("a1", change="updated", etag='W/"etag-2"'))
    # WHEN the Graph worker settles the batch in one commit (its batch processor), then the same batch again
    assert run_batch(stack, messages) == {"batchItemFailures": []}
    assert run_batch(stack, messages) == {"batchItemFailures": []}
    stack.drain("SendWorkerFunction", "SendQueue")
    # THEN one forward per event, each delivered once
    keys = sorted(r[0] for r in db.execute("SELECT event_key FROM event_log").fetchall())
    assert len(keys) == 3 and len(forwards(db)) == 3
    assert sorted(r["id"] for r in received(stack)) == keys


def test_another_exactly_once_stack_takes_a_forward_on_its_standard_webhooks_route(stack, db):
    """The receiver can be this bundle itself: its Standard Webhooks adapter verifies the forward's signature
    (our own verifier, ingest/adapters) and dedups on webhook-id, so a resent forward is stopped there."""
    from exactly_once.core.events import InboundEvent
    from exactly_once.sends import forward
    from tests.generic_support import STANDARD_SECRET

    event = InboundEvent(provider="whatsapp", key="whatsapp:wamid.X1", group="g", kind="message:text", payload={"a": 1})
    body = json.dumps(forward.body_of(event), separators=(",", ":")).encode()
    url = "http://127.0.0.1:3000/webhooks/standard/acme"
    for _ in range(2):  # a forward, then its resend after an unknown outcome: the same webhook-id
        headers = forward.signed_headers(forward.signing_key(STANDARD_SECRET), forward.webhook_id(event.key), body)
        assert stack.invoke_http("GenericIngestFunction", "POST", url, body, headers).status == 200
    stack.drain()
    assert db.execute("SELECT event_key, deliveries FROM event_log").fetchall() == [
        ("standard:acme:whatsapp:wamid.X1", 1)
    ]
