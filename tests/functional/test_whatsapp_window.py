"""WhatsApp's 24-hour customer-service window, checked by the send worker before the call: inside it the reply
goes; outside it the re-engagement template goes instead, or the row goes to review with no attempt burnt;
a conversation the bundle never saw is left to Meta. Real send worker, Postgres, the fake Cloud API."""

from __future__ import annotations

import json

from devstack import fake_whatsapp
from exactly_once.core.errors import ProviderCallError
from exactly_once.core.telemetry import Metric
from exactly_once.sends import window
from tests import emf
from tests.send_support import drain, post_send, row

PHONE, CUSTOMER = "106540352242922", "16505551234"
TEMPLATE = {"name": "we_are_back", "language": {"code": "en_US"}}


def customer_wrote(db, hours_ago: float) -> None:
    db.execute(
        "INSERT INTO whatsapp_messages (wamid, phone_number_id, wa_id, type, text, sent_at, raw)"
        " VALUES (%s, %s, %s, 'text', 'hi', now() - make_interval(secs => %s), '{}')",
        (f"wamid.in{hours_ago}", PHONE, CUSTOMER, hours_ago * 3600),
    )


def reply(stack, key: str, text: str = "thanks for writing") -> int:
    body = {"channel": "whatsapp", "sender_account": PHONE, "recipient": CUSTOMER, "payload": {"text": text}}
    answer = post_send(stack, body, key=key)
    assert answer.status == 201
    return int(answer.json()["id"])


def test_inside_the_window_the_reply_goes(stack, db):
    customer_wrote(db, hours_ago=23)
    send_id = reply(stack, "w-in")
    drain(stack)
    assert row(db, send_id)["status"] == "sent"
    assert fake_whatsapp.delivered(stack.fakes, CUSTOMER, "thanks for writing") == 1


def test_outside_the_window_without_a_template_the_row_goes_to_review_at_once(stack, db, capsys):
    # GIVEN the customer last wrote 25 hours ago, and a late reply (a backlog, a replay)
    customer_wrote(db, hours_ago=25)
    capsys.readouterr()
    send_id = reply(stack, "w-out")
    drain(stack)
    # THEN nothing reached Meta, the row is in review after its one claim, and the quarantine says why
    sent = row(db, send_id)
    assert (sent["status"], sent["attempts"]) == ("review", 1)
    assert stack.fakes.count("whatsapp.send") == 0
    (reason,) = db.execute("SELECT reason FROM quarantine WHERE event_key = %s", (f"send:{send_id}",)).fetchone()
    assert "24-hour customer-service window" in reason
    assert emf.emitted(capsys)[("whatsapp", Metric.WINDOW_CLOSED)] == 1


def test_outside_the_window_the_configured_template_goes_instead(stack, db, monkeypatch, capsys):
    monkeypatch.setenv("WHATSAPP_REENGAGEMENT_TEMPLATE", json.dumps(TEMPLATE))
    customer_wrote(db, hours_ago=30)
    capsys.readouterr()
    send_id = reply(stack, "w-template")
    drain(stack)
    assert row(db, send_id)["status"] == "sent"
    assert fake_whatsapp.delivered(stack.fakes, CUSTOMER, "template") == 1
    assert fake_whatsapp.delivered(stack.fakes, CUSTOMER, "thanks for writing") == 0
    assert emf.emitted(capsys)[("whatsapp", Metric.WINDOW_TEMPLATES)] == 1


def test_the_margin_closes_the_window_a_little_early(stack, db):
    customer_wrote(db, hours_ago=23.95)  # 3 minutes left: under the 5-minute margin, Meta would see it late
    send_id = reply(stack, "w-margin")
    drain(stack)
    assert row(db, send_id)["status"] == "review"


def test_a_conversation_the_bundle_never_saw_is_left_to_meta(stack, db):
    send_id = reply(stack, "w-unknown")
    drain(stack)
    assert row(db, send_id)["status"] == "sent"


def test_metas_131047_is_read_as_the_window_closed():
    body = {"error": {"message": "Re-engagement message", "type": "OAuthException", "code": 131047}}
    assert window.refused_outside_window(ProviderCallError(400, json.dumps(body)))
    assert not window.refused_outside_window(ProviderCallError(400, json.dumps({"error": {"code": 100}})))
    assert not window.refused_outside_window(ProviderCallError(400, "not json"))
