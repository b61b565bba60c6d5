"""The real ingest handlers on moto: a key a dead invocation still holds is a 503 until its deadline (never a
2xx that would lose it), and a signed event too large for SQS is quarantined instead of a 503 for days."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine

from devstack.aws_local import boto_client
from devstack.lambda_runtime import function_timeout
from exactly_once.core.events import MAX_MESSAGE_BYTES, QUARANTINE_RAW_BYTES
from exactly_once.ingest.dedup import IngestDeduper, Reservation
from tests.generic_support import signed_stripe, stripe_event, stripe_headers
from tests.whatsapp_support import FUNCTION as WHATSAPP
from tests.whatsapp_support import change, entry, envelope, meta_bytes, post, text_message

GENERIC = "GenericIngestFunction"
STRIPE_URL = "http://127.0.0.1:3000/webhooks/stripe"
KIB = 1024


def _holder(stack: Any, provider: str) -> IngestDeduper:
    """Another invocation's view of the provider's idempotency records (same table, same key prefix)."""
    return IngestDeduper(
        os.environ["IDEMPOTENCY_TABLE"],
        key_prefix=f"{provider}-ingest",
        window_seconds=24 * 3600,
        client=boto_client("dynamodb", stack.aws.endpoint),
    )


def _after_deadline(function: str, held_ms: int) -> time_machine.travel:
    return time_machine.travel(time.time() + max(held_ms / 1000, function_timeout(function)) + 5)


def _rows(db: Any, provider: str) -> list[tuple[str, str]]:
    return list(db.execute("SELECT event_key, outcome FROM event_log WHERE provider = %s", (provider,)).fetchall())


def test_a_retry_while_a_crashed_holder_has_the_key_is_503_and_after_its_deadline_accepted_once(stack, db):
    event_id = f"evt_{uuid.uuid4().hex[:10]}"
    body, headers = signed_stripe(event_id)
    # GIVEN an invocation reserved the event, then died before SendMessageBatch (it never completes the record)
    assert _holder(stack, "stripe").reserve(f"stripe:{event_id}", 10_000) is Reservation.NEW
    # WHEN Stripe retries before the dead invocation's deadline
    began = time.monotonic()
    early = stack.invoke_http(GENERIC, "POST", STRIPE_URL, body, headers)
    # THEN the answer is a retryable 503 (a 2xx would make Stripe stop: the event would be lost), after a short wait
    assert early.status == 503 and early.json()["error"] == "in_progress"
    assert "being processed by another delivery" in early.json()["message"]
    assert 0.9 <= time.monotonic() - began < 3
    assert stack.queue_depth("EventsQueue") == 0 and _rows(db, "stripe") == []
    # AND once the deadline has passed the retry gets through, once
    with _after_deadline(GENERIC, 10_000):
        late = stack.invoke_http(GENERIC, "POST", STRIPE_URL, body, headers)
        again = stack.invoke_http(GENERIC, "POST", STRIPE_URL, *signed_stripe(event_id))
    assert late.status == 200 and late.json()["accepted"] == 1
    assert again.status == 200 and again.json() == {"accepted": 0, "duplicates": 1, "rejected": 0}
    stack.drain()
    assert _rows(db, "stripe") == [(f"stripe:{event_id}", "recorded")]


def test_a_holder_that_completes_during_the_wait_makes_the_copy_a_duplicate(stack, db):
    event_id = f"evt_{uuid.uuid4().hex[:10]}"
    holder = _holder(stack, "stripe")
    assert holder.reserve(f"stripe:{event_id}", 10_000) is Reservation.NEW
    threading.Timer(0.3, holder.complete, (f"stripe:{event_id}", {"queued": True})).start()
    answer = stack.invoke_http(GENERIC, "POST", STRIPE_URL, *signed_stripe(event_id))
    assert answer.status == 200 and answer.json() == {"accepted": 0, "duplicates": 1, "rejected": 0}


def test_a_batch_with_one_held_key_queues_the_rest_then_503_and_the_retry_loses_nothing(stack, db):
    raw = meta_bytes(envelope(entry(change(messages=[text_message("wamid.H1", "hi"), text_message("wamid.H2", "yo")]))))
    assert _holder(stack, "whatsapp").reserve("whatsapp:msg:wamid.H2", 10_000) is Reservation.NEW  # then it died
    first = post(stack, raw)
    assert first.status == 503 and first.json()["error"] == "in_progress"  # Meta retries anything but 200
    assert stack.queue_depth("EventsQueue") == 1  # wamid.H1 was queued before the 503
    with _after_deadline(WHATSAPP, 10_000):
        retry = post(stack, raw)
    assert retry.status == 200
    stack.drain()
    stored = db.execute("SELECT wamid FROM whatsapp_messages ORDER BY wamid").fetchall()
    assert stored == [("wamid.H1",), ("wamid.H2",)]


@pytest.fixture
def aws_message_limit(stack: Any) -> Iterator[None]:
    """SQS's 256 KiB message limit on the events queue (moto defaults to SQS's newer 1 MiB)."""
    sqs, url = stack.sqs(), stack.aws.physical["EventsQueue"]
    before = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])["Attributes"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MaximumMessageSize": str(256 * KIB)})
    yield
    sqs.set_queue_attributes(QueueUrl=url, Attributes=before)


def _quarantine(db: Any) -> list[tuple[str, str, str, str]]:
    return list(db.execute("SELECT provider, event_key, reason, raw FROM quarantine").fetchall())


def test_a_signed_whatsapp_message_too_large_for_sqs_is_200_and_quarantined(stack, db, aws_message_limit):
    big = text_message("wamid.BIG", "ü" * (300 * KIB))
    raw = meta_bytes(envelope(entry(change(messages=[big, text_message("wamid.SMALL", "hello")]))))
    answer = post(stack, raw)
    assert answer.status == 200, answer.body  # not a 503 Meta would retry for 7 days
    assert post(stack, raw).status == 200  # the retry: the same quarantine event, a duplicate
    stack.drain()
    assert db.execute("SELECT wamid FROM whatsapp_messages").fetchall() == [("wamid.SMALL",)]
    [(provider, key, reason, kept)] = _quarantine(db)
    assert (provider, key) == ("whatsapp", "whatsapp:msg:wamid.BIG")
    assert "too large to queue" in reason and "sha256 " in reason
    assert 100 * KIB < len(kept.encode()) <= QUARANTINE_RAW_BYTES and '"wamid.BIG"' in kept


def test_a_signed_stripe_event_too_large_for_sqs_is_200_and_quarantined(stack, db, aws_message_limit):
    event = json.loads(stripe_event("evt_huge"))
    event["data"]["object"]["metadata"] = {"blob": "x" * (400 * KIB)}
    body = json.dumps(event).encode()
    answer = stack.invoke_http(GENERIC, "POST", STRIPE_URL, body, stripe_headers(body))
    assert answer.status == 200 and answer.json()["accepted"] == 1, answer.body
    stack.drain()
    [(provider, key, reason, kept)] = _quarantine(db)
    assert (provider, key) == ("stripe", "stripe:evt_huge")
    whole = json.dumps(event, ensure_ascii=False).encode()
    assert len(kept.encode()) <= QUARANTINE_RAW_BYTES and len(kept.encode()) < len(whole)
    # the reason names the whole payload's size and digest: an operator can match it with Stripe's copy
    assert str(MAX_MESSAGE_BYTES) in reason and str(len(whole)) in reason
    assert hashlib.sha256(whole).hexdigest() in reason and whole.decode().startswith(kept)
    assert _rows(db, "stripe") == [("stripe:evt_huge", "quarantined")]


def test_ten_large_messages_in_one_post_are_split_into_batches_under_sqs_limits(stack, db, aws_message_limit):
    messages = [text_message(f"wamid.L{i}", f"{i}" * (110 * KIB)) for i in range(10)]  # 1.1 MB: over 1 MiB a batch
    answer = post(stack, meta_bytes(envelope(entry(change(messages=messages)))))
    assert answer.status == 200 and answer.json() == {"accepted": 10, "duplicates": 0, "rejected": 0}
    stack.drain()
    assert db.execute("SELECT count(*) FROM whatsapp_messages").fetchone()[0] == 10
    assert _quarantine(db) == []


def test_the_state_of_a_held_key_as_read_from_dynamodb(stack):
    deduper, key = _holder(stack, "stripe"), f"stripe:evt_{uuid.uuid4().hex[:10]}"
    assert deduper.state(key) is None  # no record
    assert deduper.reserve(key, 10_000) is Reservation.NEW
    assert deduper.state(key) is Reservation.IN_PROGRESS
    deduper.release(key, RuntimeError("the holder failed"))
    assert deduper.state(key) is None  # released: a retry can reserve it
    assert deduper.reserve(key, 1) is Reservation.NEW
    time.sleep(0.05)
    assert deduper.state(key) is None  # the holder's deadline passed
    assert deduper.reserve(key, 10_000) is Reservation.NEW
    deduper.complete(key, {"queued": True})
    other = _holder(stack, "stripe")  # another container: no local cache, a consistent read
    assert other.state(key) is Reservation.DUPLICATE and deduper.state(key) is Reservation.DUPLICATE
