"""The send queue end to end: POST /sends, the outbox relay, SQS FIFO (moto), the send worker,
fake Unipile and WhatsApp servers over HTTP, the reapers. Postgres is the guarantee throughout."""

from __future__ import annotations

import json
import time

import pytest

from devstack import fake_whatsapp
from devstack.lambda_runtime import LambdaContext
from exactly_once.sends import queue as send_queue
from exactly_once.sends.request import SendRequest
from tests.harness import TEST_SECRETS
from tests.send_support import EVENTS, behave, delivered, drain, example_event, post_send, reap, row, send_body


def test_post_sends_twice_queues_once_and_sends_once(stack, db):
    # GIVEN a send posted twice with the same Idempotency-Key
    first = post_send(stack, send_body("Hi Ivonne"), key="k-1")
    again = post_send(stack, send_body("Hi Ivonne"), key="k-1")
    # THEN the first created it and the second found it
    assert first.status == 201 and first.json()["created"] is True
    assert again.status == 200 and again.json()["id"] == first.json()["id"]
    assert again.headers["content-type"] == "application/json"
    # WHEN the worker drains the queue
    drain(stack)
    # THEN the fake Unipile got exactly one send and the ledger holds it
    assert stack.fakes.count("unipile.send") == 1
    assert delivered(stack, "chat_1", "Hi Ivonne") == 1
    sent = row(db, first.json()["id"])
    assert sent["status"] == "sent" and sent["attempts"] == 1
    assert sent["provider_message_id"].startswith("msg_")
    ledger = db.execute("SELECT send_id, provider_message_id, settled_by FROM sent_messages").fetchall()
    assert ledger == [(sent["id"], sent["provider_message_id"], "worker")]
    assert db.execute("SELECT count(*) FROM send_outbox WHERE relayed_at IS NULL").fetchone()[0] == 0


def test_same_key_with_another_payload_is_a_409(stack, db):
    post_send(stack, send_body("Hi Carl"), key="k-2")
    clash = post_send(stack, send_body("Hi Carl!!"), key="k-2")
    assert clash.status == 409
    assert clash.json()["error"] == "idempotency_conflict"
    assert db.execute("SELECT count(*) FROM send_queue").fetchone()[0] == 1


def test_key_derived_from_campaign_prospect_and_step(stack, db):
    body = example_event()
    first = post_send(stack, body)
    again = post_send(stack, body)
    next_step = post_send(stack, {**body, "step": 2})
    assert (first.status, again.status, next_step.status) == (201, 200, 201)
    assert first.json()["idempotency_key"] == "campaign:ia-techstars-1st-degree:prospect:ivonne-quinones:step:1"
    assert db.execute("SELECT count(*) FROM send_queue").fetchone()[0] == 2


def test_invalid_bodies_are_400_json(stack, db):
    for raw, key in (
        ("not json", "k"),
        ('["a list"]', "k"),
        ('{"channel": "sms", "sender_account": "a", "recipient": "b", "payload": {"text": "x"}}', "k"),
        ('{"channel": "unipile", "recipient": "b", "payload": {"text": "x"}}', "k"),
        ('{"channel": "unipile", "sender_account": "a", "recipient": "b", "payload": {"text": "x"}}', None),
    ):
        answer = post_send(stack, raw, key=key)
        assert answer.status == 400, raw
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"]
    assert db.execute("SELECT count(*) FROM send_queue").fetchone()[0] == 0


def test_operator_route_requires_the_api_token(stack):
    authorize = stack.handler("ApiAuthorizerFunction")
    assert authorize({"headers": {"authorization": f"Bearer {TEST_SECRETS['API_TOKEN']}"}}, None) == {
        "isAuthorized": True
    }
    assert authorize({"headers": {"authorization": "Bearer wrong"}}, None) == {"isAuthorized": False}
    assert authorize({"headers": {}}, None) == {"isAuthorized": False}


def test_linkedin_warning_reschedules_then_sends_once(stack, db, monkeypatch):
    monkeypatch.setenv("SEND_RELAY_GRACE_SECONDS", "0")
    # GIVEN Unipile answers the first send with a LinkedIn warning (429, Retry-After: 1)
    behave(stack, "unipile.send", fail_times=1, fail_status=429)
    send_id = post_send(stack, send_body("Hi Chudi"), key="k-3").json()["id"]
    drain(stack)
    # THEN the row is pending again at the resume time (never left in processing), the sender paused
    held = row(db, send_id)
    assert held["status"] == "pending" and held["claim_token"] is None
    assert held["scheduled_for"] > held["updated_at"]
    assert "rate limited" in held["last_error"]
    paused = db.execute("SELECT paused_until FROM sender_pacing WHERE sender_account = 'acc_1'").fetchone()[0]
    assert paused is not None
    # WHEN the resume time passes and the sweeper relays the row's outbox record
    time.sleep(1.2)
    assert reap(["send_outbox"])["send_outbox"] == 1
    drain(stack)
    # THEN it was sent once: two calls (warning, accepted), one message in the chat
    assert row(db, send_id)["status"] == "sent"
    assert stack.fakes.count("unipile.send") == 2
    assert delivered(stack, "chat_1", "Hi Chudi") == 1


def test_timeout_is_unknown_and_reconciliation_finds_the_message(stack, db, monkeypatch):
    monkeypatch.setenv("SEND_PROVIDER_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    # GIVEN Unipile accepts the message but answers after the client's timeout
    behave(stack, "unipile.send", hang=2.0, hang_times=1)
    send_id = post_send(stack, send_body("Hi Gilad"), key="k-4").json()["id"]
    drain(stack)
    # THEN the outcome is unknown, and nothing was resent
    assert row(db, send_id)["status"] == "unknown"
    assert stack.fakes.count("unipile.send") == 1
    time.sleep(1.2)  # the hung answer finishes at the fake
    # WHEN the reaper reconciles
    reap(["send_reconcile"])
    # THEN the chat listing settled it as sent, recorded by reconciliation, still one send
    settled = row(db, send_id)
    assert settled["status"] == "sent"
    assert db.execute("SELECT settled_by FROM sent_messages").fetchone()[0] == "reconciliation"
    assert stack.fakes.count("unipile.list", "chat_1") == 1
    drain(stack)
    assert stack.fakes.count("unipile.send") == 1
    assert delivered(stack, "chat_1", "Hi Gilad") == 1


def test_5xx_is_unknown_then_reconciled_to_pending_and_sent_once(stack, db, monkeypatch):
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    # GIVEN Unipile fails the first send with a 503 (and did not deliver it)
    behave(stack, "unipile.send", fail_times=1, fail_status=503)
    send_id = post_send(stack, send_body("Hi Carl"), key="k-5").json()["id"]
    drain(stack)
    assert row(db, send_id)["status"] == "unknown"
    # WHEN reconciliation lists the chat and does not find it
    reap(["send_reconcile"])
    assert row(db, send_id)["status"] == "pending"
    drain(stack)  # reconciliation relayed it at once
    # THEN it is sent, once
    assert row(db, send_id)["status"] == "sent"
    assert row(db, send_id)["attempts"] == 2
    assert delivered(stack, "chat_1", "Hi Carl") == 1


def test_permanent_error_fails_with_the_reason(stack, db):
    behave(stack, "unipile.send", fail_times=1, fail_status=400)
    send_id = post_send(stack, send_body("Hi"), key="k-6").json()["id"]
    drain(stack)
    failed = row(db, send_id)
    assert failed["status"] == "failed" and "400" in failed["last_error"]
    assert stack.fakes.count("unipile.send") == 1


def test_whatsapp_send_records_the_wamid(stack, db):
    body = {"channel": "whatsapp", "sender_account": "1234567890", "recipient": "15550001111", "text": "Olá"}
    send_id = post_send(stack, body, key="wa-1").json()["id"]
    drain(stack)
    sent = row(db, send_id)
    assert sent["status"] == "sent" and sent["provider_message_id"].startswith("wamid.")
    assert fake_whatsapp.delivered(stack.fakes, "15550001111", "Olá") == 1


def test_whatsapp_unknown_outcome_follows_the_delivery_policy(stack, db, monkeypatch):
    monkeypatch.setenv("SEND_PROVIDER_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    behave(stack, "whatsapp.send", hang=1.5, hang_times=2)
    careful = post_send(
        stack, {"channel": "whatsapp", "sender_account": "p1", "recipient": "155501", "text": "a"}, key="wa-2"
    ).json()["id"]
    eager = post_send(
        stack,
        {"channel": "whatsapp", "sender_account": "p2", "recipient": "155502", "text": "b", "policy": "at_least_once"},
        key="wa-3",
    ).json()["id"]
    drain(stack)
    assert row(db, careful)["status"] == row(db, eager)["status"] == "unknown"
    time.sleep(0.6)
    reap(["send_reconcile"])
    # at_most_once: WhatsApp cannot list sends -> review, kept in quarantine for a person
    assert row(db, careful)["status"] == "review"
    quarantined = db.execute("SELECT provider, event_key FROM quarantine").fetchall()
    assert quarantined == [("whatsapp", f"send:{careful}")]
    # at_least_once: pending again, and resent
    drain(stack)
    assert row(db, eager)["status"] == "sent"
    assert fake_whatsapp.delivered(stack.fakes, "155502", "b") == 2  # the policy's accepted cost
    assert fake_whatsapp.delivered(stack.fakes, "155501", "a") == 1


def test_pacing_from_the_database_spaces_and_caps_a_sender(stack, db):
    # GIVEN a sender allowed one send every 30 s
    send_queue.set_pacing(db, "unipile", "acc_p", daily_cap=100, min_spacing_seconds=30)
    a = post_send(stack, send_body("one", sender="acc_p"), key="p-1").json()["id"]
    b = post_send(stack, send_body("two", sender="acc_p"), key="p-2").json()["id"]
    drain(stack)
    # THEN the first went and the second waits for the spacing, with an outbox record for then
    assert row(db, a)["status"] == "sent"
    waiting = row(db, b)
    assert waiting["status"] == "pending" and waiting["attempts"] == 0
    gap = db.execute(
        "SELECT extract(epoch FROM s.scheduled_for - p.last_sent_at) FROM send_queue s, sender_pacing p "
        "WHERE s.id = %s AND p.sender_account = 'acc_p'",
        (b,),
    ).fetchone()[0]
    assert 29 <= float(gap) <= 31
    assert (
        db.execute("SELECT count(*) FROM send_outbox WHERE send_id = %s AND relayed_at IS NULL", (b,)).fetchone()[0]
        == 1
    )
    # AND a daily cap of 1 holds the next one until tomorrow
    send_queue.set_pacing(db, "unipile", "acc_p", daily_cap=1, min_spacing_seconds=0)
    db.execute("UPDATE send_queue SET scheduled_for = now() WHERE id = %s", (b,))
    db.execute("UPDATE send_outbox SET available_at = now() WHERE send_id = %s", (b,))
    send_queue.relay([b])
    drain(stack)
    assert row(db, b)["scheduled_for"].date() > row(db, a)["sent_at"].date()
    assert stack.fakes.count("unipile.send") == 1


def test_expired_lease_becomes_unknown_and_the_stuck_gauge_sees_it(stack, db, monkeypatch, capsys):
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    send_id = post_send(stack, send_body("Hi"), key="k-7").json()["id"]
    # GIVEN a worker claimed the row and vanished 10 minutes ago (its lease long expired)
    claim = send_queue.claim(db, send_id)
    assert isinstance(claim, send_queue.SendClaim)
    db.execute(
        "UPDATE send_queue SET lease_until = now() - interval '9 minutes', "
        "status_changed_at = now() - interval '10 minutes' WHERE id = %s",
        (send_id,),
    )
    capsys.readouterr()
    # WHEN the reapers run
    reap(["send_stuck"])
    # THEN the gauge reports the stuck row (the alarm's metric)
    assert '"StuckRows":[1.0]' in capsys.readouterr().out.replace(" ", "")
    # AND the lease reaper makes it unknown (never pending)
    assert reap(["send_leases"])["send_leases"] == 1
    assert row(db, send_id)["status"] == "unknown"
    # AND reconciliation finds nothing in the chat: pending, then sent once
    reap(["send_reconcile"])
    drain(stack)
    assert row(db, send_id)["status"] == "sent"
    assert stack.fakes.count("unipile.send") == 1
    # AND the late worker's completion is fenced out
    assert send_queue.complete(db, claim, "msg_late") is False


def test_the_sweeper_relays_what_the_after_commit_relay_missed(stack, db, monkeypatch):
    monkeypatch.setenv("SEND_RELAY_GRACE_SECONDS", "0")
    # GIVEN a row enqueued by the library whose caller never relayed it (crashed after commit)
    with db.transaction():
        queued = send_queue.enqueue(db, SendRequest("lib-1", "unipile", "acc_1", "chat_9", {"text": "yo"}))
    assert stack.queue_depth("SendQueue") == 0
    # WHEN the reaper sweeps the outbox
    assert reap(["send_outbox"])["send_outbox"] == 1
    assert reap(["send_outbox"])["send_outbox"] == 0  # marked: not relayed twice
    drain(stack)
    # THEN it is sent once
    assert row(db, queued.id)["status"] == "sent"
    assert delivered(stack, "chat_9", "yo") == 1


def test_relay_refuses_to_run_inside_the_enqueueing_transaction(stack, db):
    from exactly_once.core import db as container

    conn = container.connection()
    with conn.transaction():
        queued = send_queue.enqueue(conn, SendRequest("lib-2", "unipile", "a", "c", {"text": "t"}))
        with pytest.raises(RuntimeError, match="after the enqueueing transaction commits"):
            send_queue.relay([queued.id])
    assert send_queue.relay([queued.id]) == 1


def test_the_example_queue_record_is_handled_by_the_worker(stack, db):
    # events/send_queue_record.json points at send 1, outbox record 1
    post_send(stack, send_body("Hello from the example"), key="ex-1")
    event = json.loads((EVENTS / "send_queue_record.json").read_text())
    result = stack.handler("SendWorkerFunction")(event, LambdaContext(function_name="SendWorkerFunction"))
    assert result == {"batchItemFailures": []}
    assert row(db, 1)["status"] == "sent"
    again = stack.handler("SendWorkerFunction")(event, LambdaContext(function_name="SendWorkerFunction"))
    assert again == {"batchItemFailures": []}
    assert stack.fakes.count("unipile.send") == 1


def test_reconciliation_skips_an_identical_message_another_row_already_recorded(stack, db, monkeypatch):
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    # GIVEN the same text sent to the same chat by an earlier row (a repeated campaign step)
    first = post_send(stack, send_body("Thanks!", chat="chat_r"), key="r-1").json()["id"]
    drain(stack)
    assert row(db, first)["status"] == "sent"
    # AND a second row with that text whose send failed with a 503 (not delivered)
    behave(stack, "unipile.send", fail_times=1, fail_status=503)
    second = post_send(stack, send_body("Thanks!", chat="chat_r"), key="r-2").json()["id"]
    drain(stack)
    assert row(db, second)["status"] == "unknown"
    # WHEN reconciliation lists the chat: the only match is the first row's message
    reap(["send_reconcile"])
    # THEN it is not taken for the second row's: pending, then really sent
    drain(stack)
    assert row(db, second)["status"] == "sent"
    assert row(db, second)["provider_message_id"] != row(db, first)["provider_message_id"]
    assert delivered(stack, "chat_r", "Thanks!") == 2


def test_a_person_resolves_a_send_in_review(stack, db, monkeypatch):
    monkeypatch.setenv("SEND_PROVIDER_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    behave(stack, "whatsapp.send", hang=1.5, hang_times=2)
    ids = [
        post_send(
            stack, {"channel": "whatsapp", "sender_account": "p1", "recipient": f"1555{i}", "text": "hi"}, key=f"rv-{i}"
        ).json()["id"]
        for i in range(2)
    ]
    drain(stack)
    time.sleep(0.6)
    reap(["send_reconcile"])
    assert [row(db, i)["status"] for i in ids] == ["review", "review"]
    # WHEN the operator finds the first in the recipient's chat, and not the second
    found, missing = ids
    assert send_queue.resolve_review(db, found, "sent", note="seen in WA", by="ops", provider_message_id="wamid.X")
    assert send_queue.resolve_review(db, missing, "resend", note="not delivered", by="ops") == "pending"
    assert send_queue.resolve_review(db, missing, "drop", note="again", by="ops") is None  # no longer in review
    send_queue.relay([missing])
    drain(stack)
    # THEN the first is sent (recorded by the operator), the second resent once, quarantine resolved
    assert row(db, found)["status"] == "sent"
    assert db.execute("SELECT settled_by FROM sent_messages WHERE send_id = %s", (found,)).fetchone()[0] == "operator"
    assert row(db, missing)["status"] == "sent"
    assert db.execute("SELECT count(*) FROM quarantine WHERE status = 'open'").fetchone()[0] == 0
    assert stack.fakes.count("whatsapp.send") == 3


def test_database_lost_mid_statement_is_a_503_and_nothing_is_queued(stack, db, database_url):
    import threading

    import psycopg

    # GIVEN another session holding the same key, uncommitted: the enqueue's insert waits on it
    blocker = psycopg.connect(database_url)
    send_queue.enqueue(blocker, SendRequest("k-down", "unipile", "acc_1", "chat_1", {"text": "Hi"}))
    answers = []
    poster = threading.Thread(target=lambda: answers.append(post_send(stack, send_body("Hi"), key="k-down")))
    poster.start()
    try:
        # WHEN the database drops the handler's connection in the middle of that statement
        for _ in range(100):
            waiting = db.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%%send_queue%%'"
            ).fetchall()
            if waiting:
                break
            time.sleep(0.05)
        assert len(waiting) == 1
        assert db.execute("SELECT pg_terminate_backend(%s)", (waiting[0][0],)).fetchone()[0]
        poster.join(30)
    finally:
        blocker.rollback()
        blocker.close()
    # THEN POST /sends answers 503 with a clear JSON error
    (answer,) = answers
    assert answer.status == 503
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": "database_unavailable", "message": "database unavailable"}
    # AND nothing was half-written: no row, no outbox record, nothing on the queue
    assert db.execute("SELECT count(*) FROM send_queue").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM send_outbox").fetchone()[0] == 0
    assert stack.queue_depth("SendQueue") == 0
    # AND the same request again, once the database answers, queues it once
    again = post_send(stack, send_body("Hi"), key="k-down")
    assert again.status == 201
    assert db.execute("SELECT count(*) FROM send_queue").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM send_outbox").fetchone()[0] == 1
