"""WhatsApp Cloud API webhooks end to end: the real handlers, serialised moto, Postgres, signed Meta payloads."""

from __future__ import annotations

import json

from tests.whatsapp_support import (
    CUSTOMER,
    PHONE,
    change,
    contact,
    entry,
    envelope,
    failed,
    message_of_type,
    meta_bytes,
    one_text,
    post,
    sign,
    status,
    text_message,
)


def replies(db) -> list[tuple[str, str, str, str]]:
    rows = db.execute(
        "SELECT idempotency_key, sender_account, recipient, payload->>'text' FROM send_queue ORDER BY id"
    ).fetchall()
    return [tuple(r) for r in rows]


def test_text_message_is_stored_once_and_one_reply_is_queued(stack, db):
    # GIVEN a customer's "test", delivered by Meta and then re-delivered
    first = post(stack, one_text("wamid.T1", "test"))
    again = post(stack, one_text("wamid.T1", "test"))
    stack.drain()
    # THEN both deliveries get 200 (only 200 counts for Meta), the second one as a duplicate
    assert (first.status, first.json()) == (200, {"accepted": 1, "duplicates": 0, "rejected": 0})
    assert (again.status, again.json()) == (200, {"accepted": 0, "duplicates": 1, "rejected": 0})
    # AND the message is stored once with its contact, and one reply waits in the send queue
    row = db.execute("SELECT wamid, phone_number_id, wa_id, contact_name, type, text FROM whatsapp_messages").fetchall()
    assert row == [("wamid.T1", PHONE, CUSTOMER, "Sheena Nelson", "text", "test")]
    assert replies(db) == [("reply:wamid.T1", PHONE, CUSTOMER, "test is working")]
    assert db.execute("SELECT outcome FROM event_log").fetchall() == [("replied",)]


def test_several_entries_messages_and_statuses_in_one_post(stack, db):
    # GIVEN one POST with two entries (two business numbers), several messages per change,
    # and messages and statuses mixed in one value, as Meta batches them
    payload = envelope(
        entry(
            change(
                messages=[text_message("wamid.A1", "hello"), text_message("wamid.A2", "again", sender="447700900123")],
                statuses=[status("wamid.OUT1", "delivered")],
            ),
            change(statuses=[status("wamid.OUT1", "read"), status("wamid.OUT2", "sent", recipient="447700900123")]),
        ),
        entry(change(messages=[text_message("wamid.B1", "other number")], phone="201234567890"), waba="999"),
    )
    answer = post(stack, payload)
    stack.drain()
    assert (answer.status, answer.json()["accepted"]) == (200, 6)
    stored = db.execute("SELECT wamid, phone_number_id, wa_id, text FROM whatsapp_messages ORDER BY wamid").fetchall()
    assert stored == [
        ("wamid.A1", PHONE, CUSTOMER, "hello"),
        ("wamid.A2", PHONE, "447700900123", "again"),
        ("wamid.B1", "201234567890", CUSTOMER, "other number"),
    ]
    assert sorted(r[0] for r in replies(db)) == ["reply:wamid.A1", "reply:wamid.A2", "reply:wamid.B1"]
    # the reply goes out from the number the message was sent to
    assert ("reply:wamid.B1", "201234567890", CUSTOMER, "other number is working") in replies(db)
    delivery = dict(db.execute("SELECT provider_message_id, status FROM message_delivery").fetchall())
    assert delivery == {"wamid.OUT1": "read", "wamid.OUT2": "sent"}


def test_non_ascii_text_signed_as_escaped_unicode_bytes(stack, db):
    # GIVEN text with accents, CJK and an emoji outside the BMP; Meta posts it \\u-escaped
    text = "Olá, ça marche? 你好 👋"
    raw = meta_bytes(one_text("wamid.U1", text))
    assert raw.isascii() and b"\\ud83d\\udc4b" in raw  # the emoji as a surrogate pair, as Meta sends it
    answer = post(stack, raw)
    stack.drain()
    assert answer.status == 200
    assert db.execute("SELECT text FROM whatsapp_messages").fetchone()[0] == text
    assert replies(db)[0][3] == f"{text} is working"


def test_raw_utf8_body_is_verified_over_the_bytes_received(stack, db):
    # A body with raw UTF-8 (not escaped) must be verified over exactly those bytes
    raw = json.dumps(one_text("wamid.U2", "naïve café"), ensure_ascii=False).encode("utf-8")
    assert post(stack, raw).status == 200
    # the same characters escaped are different bytes: the first signature does not cover them
    escaped = meta_bytes(one_text("wamid.U2", "naïve café"))
    assert post(stack, escaped, signature=sign(raw)).status == 401
    stack.drain()
    assert db.execute("SELECT text FROM whatsapp_messages").fetchone()[0] == "naïve café"


def test_statuses_out_of_order_only_move_forward(stack, db):
    # GIVEN statuses of one outbound message arriving read, delivered, sent (reverse order)
    for state in ("read", "delivered", "sent"):
        assert post(stack, envelope(entry(change(statuses=[status("wamid.OUT", state)])))).status == 200
        stack.drain()
    # THEN the late "delivered" and "sent" never overwrite "read"
    assert db.execute("SELECT status FROM message_delivery").fetchone()[0] == "read"
    # WHEN "played" (a voice message) arrives, it moves forward
    post(stack, envelope(entry(change(statuses=[status("wamid.OUT", "played")]))))
    stack.drain()
    assert db.execute("SELECT status FROM message_delivery").fetchone()[0] == "played"
    outcomes = [r[0] for r in db.execute("SELECT outcome FROM event_log ORDER BY id")]
    assert outcomes == ["status_applied", "status_stale", "status_stale", "status_applied"]


def test_failed_status_keeps_its_errors_and_a_late_sent_does_not_undo_it(stack, db):
    post(stack, envelope(entry(change(statuses=[failed("wamid.F1")]))))
    stack.drain()
    post(stack, envelope(entry(change(statuses=[status("wamid.F1", "sent")]))))
    stack.drain()
    state, errors = db.execute("SELECT status, errors FROM message_delivery").fetchone()
    assert state == "failed"
    assert errors[0]["code"] == 131047
    assert "24 hours" in errors[0]["error_data"]["details"]


def test_late_failure_after_delivered_keeps_its_errors_without_moving_back(stack, db):
    # GIVEN a message already delivered
    post(stack, envelope(entry(change(statuses=[status("wamid.F2", "delivered")]))))
    stack.drain()
    # WHEN a "failed" with errors arrives late
    post(stack, envelope(entry(change(statuses=[failed("wamid.F2")]))))
    stack.drain()
    # THEN the status stays delivered, and the errors are kept for review
    state, errors = db.execute("SELECT status, errors FROM message_delivery").fetchone()
    assert state == "delivered"
    assert errors[0]["code"] == 131047
    outcomes = [r[0] for r in db.execute("SELECT outcome FROM event_log ORDER BY id")]
    assert outcomes == ["status_applied", "status_stale"]


def test_unknown_and_non_text_message_types_are_stored_without_reply(stack, db):
    messages = [
        message_of_type("wamid.I1", "image", {"id": "MEDIA1", "mime_type": "image/jpeg", "caption": "look"}),
        message_of_type("wamid.X1", "unsupported", {}),
        message_of_type("wamid.X2", "hologram", {"depth": 3}),  # a type Meta may add tomorrow
        message_of_type("wamid.R1", "reaction", {"message_id": "wamid.OUT", "emoji": "\u2764\ufe0f"}),
    ]
    answer = post(stack, envelope(entry(change(messages=messages))))
    stack.drain()
    assert answer.status == 200 and answer.json()["accepted"] == 4
    stored = dict(db.execute("SELECT wamid, type FROM whatsapp_messages").fetchall())
    assert stored == {"wamid.I1": "image", "wamid.X1": "unsupported", "wamid.X2": "hologram", "wamid.R1": "reaction"}
    assert replies(db) == []
    assert {r[0] for r in db.execute("SELECT outcome FROM event_log")} == {"stored_no_reply"}
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
    assert stack.queue_depth("EventsDeadLetterQueue") == 0


def test_interactive_reply_text_is_read_but_the_default_bot_answers_text_only(stack, db):
    button = message_of_type(
        "wamid.B1", "interactive", {"type": "button_reply", "button_reply": {"id": "y", "title": "Yes"}}
    )
    post(stack, envelope(entry(change(messages=[button], contacts=[contact(name="Ana")]))))
    stack.drain()
    assert db.execute("SELECT type, text, contact_name FROM whatsapp_messages").fetchone() == (
        "interactive",
        "Yes",
        "Ana",
    )
    assert replies(db) == []


def test_without_a_configured_responder_a_message_is_stored_and_nobody_is_answered(stack, db, monkeypatch):
    # GIVEN a stack deployed with the WhatsAppResponder parameter left empty (the tests configure the echo bot)
    monkeypatch.setenv("WHATSAPP_RESPONDER", "")
    # WHEN a stranger writes to the number
    post(stack, one_text("wamid.S1", "test"))
    stack.drain()
    stack.drain("SendWorkerFunction", "SendQueue")
    # THEN the message is kept, and no reply is queued or sent (issue 16)
    assert db.execute("SELECT wamid FROM whatsapp_messages").fetchall() == [("wamid.S1",)]
    assert replies(db) == [] and stack.fakes.count("whatsapp.send") == 0


def test_a_pluggable_responder_answers_instead_of_the_default(stack, db, monkeypatch):
    monkeypatch.setenv("WHATSAPP_RESPONDER", "tests.whatsapp_bots:ShoutingBot")
    post(stack, one_text("wamid.P1", "hi there"))
    stack.drain()
    assert replies(db) == [("reply:wamid.P1", PHONE, CUSTOMER, "HI THERE!")]


def test_reply_reaches_the_customer_once_through_the_send_queue(stack, db):
    # GIVEN "test" delivered twice by Meta
    post(stack, one_text("wamid.E1", "test"))
    post(stack, one_text("wamid.E1", "test"))
    # WHEN the event worker and then the send worker run
    stack.drain()
    stack.drain("SendWorkerFunction", "SendQueue")
    # THEN the fake WhatsApp send API saw exactly one reply, and the send row holds its wamid
    assert stack.fakes.count("whatsapp.send", f"{CUSTOMER}:test is working") == 1
    assert stack.fakes.count("whatsapp.send") == 1
    state, wamid = db.execute("SELECT status::text, provider_message_id FROM send_queue").fetchone()
    assert state == "sent" and wamid.startswith("wamid.")
    # AND Meta's statuses for the reply, out of order, land on that wamid and only move forward
    post(stack, envelope(entry(change(statuses=[status(wamid, "read"), status(wamid, "delivered")]))))
    stack.drain()
    joined = db.execute(
        "SELECT d.status FROM send_queue s JOIN message_delivery d ON d.provider_message_id = s.provider_message_id"
    ).fetchall()
    assert joined == [("read",)]


def test_sample_events_are_signed_with_the_test_secrets(stack, db):
    from devstack.lambda_runtime import LambdaContext, http_response
    from devstack.template import ROOT

    handler = stack.handler("WhatsAppIngestFunction")
    for name, expected in (("whatsapp_verify.json", b"1158201444"), ("whatsapp_message.json", None)):
        event = json.loads((ROOT / "events" / name).read_text(encoding="utf-8"))
        status_code, _, body = http_response(handler(event, LambdaContext(function_name="WhatsAppIngestFunction")))
        assert status_code == 200
        if expected is not None:
            assert body == expected
    stack.drain()
    assert replies(db)[0][3] == "test is working"


def test_a_batch_with_copies_inside_is_deduped_concurrently_at_ingest(stack, db):
    # GIVEN one POST of 60 messages where 20 appear twice, and a status twice
    messages = [text_message(f"wamid.C{i}", f"m{i}") for i in range(40)]
    copies = messages + messages[:20]
    payload = envelope(entry(change(messages=copies, statuses=[status("wamid.O", "read")] * 2)))
    first = post(stack, payload)
    # THEN each distinct update is accepted once, the copies are counted as duplicates
    assert first.json() == {"accepted": 41, "duplicates": 21, "rejected": 0}
    assert stack.queue_depth("EventsQueue") == 41
    # AND the same POST again is all duplicates, and nothing more is queued
    assert post(stack, payload).json() == {"accepted": 0, "duplicates": 62, "rejected": 0}
    stack.drain()
    assert db.execute("SELECT count(*) FROM whatsapp_messages").fetchone()[0] == 40
    assert db.execute("SELECT count(*) FROM send_queue").fetchone()[0] == 40


def test_routine_fields_are_recorded_once_and_counted_not_quarantined(stack, db, capsys):
    from exactly_once.core.telemetry import Metric
    from exactly_once.flows.whatsapp import processor
    from exactly_once.flows.whatsapp.adapter import WhatsAppAdapter
    from exactly_once.ingest.apigw import Request
    from tests import emf
    from tests.harness import TEST_SECRETS

    # GIVEN a template approved and a quality downgrade, on the webhook the bot listens to, sent twice by Meta
    template = {
        "event": "APPROVED",
        "message_template_id": 1234567,
        "message_template_name": "order_update",
        "message_template_language": "en_US",
        "reason": "NONE",
        "message_template_category": "UTILITY",
    }
    quality = {"display_phone_number": "15550783881", "event": "DOWNGRADE", "current_limit": "TIER_1K"}  # fmt: skip
    body = envelope(
        {
            **entry(
                {"field": "message_template_status_update", "value": template},
                {"field": "phone_number_quality_update", "value": quality},
            ),
            "time": 1795334400,
        }
    )
    capsys.readouterr()
    assert post(stack, body).json() == {"accepted": 2, "duplicates": 0, "rejected": 0}
    assert post(stack, body).json() == {"accepted": 0, "duplicates": 2, "rejected": 0}
    stack.drain()
    # THEN each is one event_log row of its field kind, with its payload (a REJECTED reason is read there)
    rows = db.execute(
        "SELECT kind, outcome, payload->'value'->>'event' FROM event_log WHERE provider = 'whatsapp' ORDER BY kind"
    ).fetchall()
    assert rows == [
        ("field:message_template_status_update", "recorded", "APPROVED"),
        ("field:phone_number_quality_update", "recorded", "DOWNGRADE"),
    ]
    # AND nothing went to quarantine (its alarm stays quiet) and the updates are counted
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
    assert emf.emitted(capsys)[("whatsapp", Metric.FIELD_UPDATES)] == 2
    # AND a re-delivery past ingest (window expired, SQS redelivery) only counts another delivery
    raw = meta_bytes(body)
    request = Request(method="POST", path="/webhooks/whatsapp", raw_body=raw, headers={}, query={})
    events = WhatsAppAdapter(TEST_SECRETS["WHATSAPP_APP_SECRET"], "t").split(request).events
    assert [processor.process(e) for e in events] == ["duplicate", "duplicate"]
    assert db.execute("SELECT sum(deliveries) FROM event_log WHERE kind LIKE 'field:%'").fetchone()[0] == 4
