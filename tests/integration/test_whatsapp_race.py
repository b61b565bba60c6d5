"""The race of the WhatsApp double-reply incident: Meta delivers the same messages twice within milliseconds
(here: 20 times from 4 processes), workers race on the same events, and Meta re-delivers a week later, past the
ingest window -> one stored message and one reply per message, counted at the fake WhatsApp API."""

from __future__ import annotations

import time

import pytest
import time_machine

from exactly_once.flows.whatsapp.adapter import WhatsAppAdapter
from exactly_once.ingest.apigw import Request
from tests.harness import TEST_SECRETS
from tests.procs import deliver, run_parallel, work
from tests.whatsapp_support import (
    CUSTOMER,
    FUNCTION,
    URL,
    change,
    entry,
    envelope,
    headers_for,
    meta_bytes,
    post,
    text_message,
)

pytestmark = pytest.mark.slow

WORDS = ["test", "hello", "price?", "olá", "👋"]


def batch() -> bytes:
    messages = [text_message(f"wamid.R{i}", word) for i, word in enumerate(WORDS)]
    return meta_bytes(envelope(entry(change(messages=messages))))


def queue_messages(raw: bytes) -> list[str]:
    """The events ingest would enqueue for this body, as SQS message bodies."""
    adapter = WhatsAppAdapter(TEST_SECRETS["WHATSAPP_APP_SECRET"], TEST_SECRETS["WHATSAPP_VERIFY_TOKEN"])
    request = Request("POST", "/webhooks/whatsapp", raw, headers_for(raw), {})
    return [event.to_message() for event in adapter.split(request).events]


def test_simultaneous_and_week_late_duplicates_make_one_message_and_one_reply_each(stack, db):
    raw = batch()
    # WHEN 4 processes deliver the same 5-message POST 5 times each, all at once
    start = time.time() + 3
    statuses = run_parallel(
        deliver, [(stack.env, FUNCTION, [("POST", URL, raw, headers_for(raw))] * 5, start) for _ in range(4)]
    )
    # THEN all 20 deliveries are answered 200, and ingest let each message through once
    assert [s for per_proc in statuses for s in per_proc] == [200] * 20
    assert stack.queue_depth("EventsQueue") == len(WORDS)

    # WHEN 4 workers get every message event at the same moment (FIFO dedup forgotten, an ingest
    # record lost): only Postgres can stop these
    bodies = queue_messages(raw)
    start = time.time() + 3
    assert run_parallel(work, [(stack.env, bodies, start) for _ in range(4)]) == [0, 0, 0, 0]
    stack.drain()

    # WHEN Meta re-delivers the POST 8 days later, past the ingest window
    with time_machine.travel(time.time() + 8 * 24 * 3600 + 3600):
        late = post(stack, raw)
        assert late.status == 200 and late.json()["accepted"] == len(WORDS)  # the window passed
        stack.drain()
    stack.drain("SendWorkerFunction", "SendQueue")

    # THEN one stored message and one reply per message, counted where the customer would see it
    assert db.execute("SELECT count(*), count(DISTINCT wamid) FROM whatsapp_messages").fetchone() == (5, 5)
    for word in WORDS:
        assert stack.fakes.count("whatsapp.send", f"{CUSTOMER}:{word} is working") == 1, word
    assert stack.fakes.count("whatsapp.send") == len(WORDS)
    assert db.execute("SELECT count(*) FROM send_queue WHERE status = 'sent'").fetchone()[0] == len(WORDS)
    # AND every duplicate that reached Postgres was stopped there and counted
    # (per message: 4 racing workers, the ingested copy, the late re-delivery)
    assert db.execute("SELECT sum(deliveries) FROM event_log WHERE provider = 'whatsapp'").fetchone()[0] == 6 * 5
    outcomes = dict(db.execute("SELECT outcome, count(*) FROM event_log GROUP BY outcome").fetchall())
    assert outcomes == {"replied": len(WORDS)}
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0


@pytest.mark.parametrize("point", ["whatsapp.worker.before_commit", "whatsapp.worker.after_responder"])
def test_worker_killed_before_commit_leaves_nothing_and_the_redelivery_replies_once(stack, db, point):
    (body,) = queue_messages(meta_bytes(envelope(entry(change(messages=[text_message("wamid.K1", "test")])))))
    with pytest.raises(Exception):  # noqa: B017 - the child dies by SIGKILL: BrokenProcessPool
        run_parallel(work, [({**stack.env, "EO_CRASH_AT": point}, [body], time.time())], 1)
    assert db.execute("SELECT count(*) FROM whatsapp_messages").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM send_queue").fetchone()[0] == 0
    # SQS redelivers the event after the visibility timeout
    assert run_parallel(work, [(stack.env, [body], time.time())], 1) == [0]
    stack.drain("SendWorkerFunction", "SendQueue")
    assert stack.fakes.count("whatsapp.send", f"{CUSTOMER}:test is working") == 1


def test_worker_killed_after_commit_before_relay_the_sweeper_relays_the_one_reply(stack, db, monkeypatch):
    from exactly_once.core import db as eo_db
    from exactly_once.ops.reapers import run_all

    (body,) = queue_messages(meta_bytes(envelope(entry(change(messages=[text_message("wamid.K2", "test")])))))
    with pytest.raises(Exception):  # noqa: B017 - BrokenProcessPool from the SIGKILL
        run_parallel(work, [({**stack.env, "EO_CRASH_AT": "whatsapp.worker.after_commit"}, [body], time.time())], 1)
    # committed: the message and its reply row, but nothing on the SendQueue yet
    assert db.execute("SELECT count(*) FROM whatsapp_messages").fetchone()[0] == 1
    assert db.execute("SELECT status::text FROM send_queue").fetchall() == [("pending",)]
    assert stack.queue_depth("SendQueue") == 0
    # SQS redelivers the event: it stops at the event log and does not relay (nor enqueue) again
    assert run_parallel(work, [(stack.env, [body], time.time())], 1) == [0]
    assert stack.queue_depth("SendQueue") == 0
    # WHEN the scheduled sweeper runs
    monkeypatch.setenv("SEND_RELAY_GRACE_SECONDS", "0")
    assert run_all(eo_db.connection(), only=["send_outbox"])["send_outbox"] == 1
    stack.drain("SendWorkerFunction", "SendQueue")
    # THEN the customer got exactly one reply
    assert stack.fakes.count("whatsapp.send", f"{CUSTOMER}:test is working") == 1
    assert db.execute("SELECT deliveries FROM event_log").fetchone()[0] == 2
