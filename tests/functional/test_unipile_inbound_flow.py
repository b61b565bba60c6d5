"""Unipile messaging webhooks end to end: the secret header, one row per LinkedIn message, direction.

The real UnipileIngestFunction and event worker on serialised moto and Postgres.
"""

from __future__ import annotations

import json
import time

import pytest
import time_machine

from exactly_once.core.errors import ConfigurationError
from tests.generic_support import UNIPILE_SECRET, sample_body, unipile_headers, unipile_message
from tests.harness import HttpAnswer, Stack

FUNCTION = "UnipileIngestFunction"
ACCOUNT = "dfXlh46vQYCsMbVarumWlg"


def post(stack: Stack, body: bytes, headers: dict[str, str] | None = None) -> HttpAnswer:
    return stack.invoke_http(
        FUNCTION, "POST", "http://127.0.0.1:3000/webhooks/unipile", body, headers or unipile_headers()
    )


def messages(db) -> list[tuple[str, str, str | None]]:
    return db.execute("SELECT message_id, direction, sender_id FROM linkedin_messages ORDER BY id").fetchall()


def test_an_inbound_message_delivered_twice_is_recorded_once(stack, db):
    # GIVEN a prospect's message WHEN Unipile delivers it and retries it
    body = sample_body("unipile_message_received.json")
    first, again = post(stack, body), post(stack, body)
    stack.drain()
    # THEN the first is accepted with the 200 Unipile needs, the retry stopped at ingest
    assert (first.status, first.json()) == (200, {"accepted": 1, "duplicates": 0, "rejected": 0})
    assert again.json() == {"accepted": 0, "duplicates": 1, "rejected": 0}
    # AND one inbound row exists, with who sent it and when
    assert messages(db) == [("ykmhfXlRW0W_cqReJYrfBw", "inbound", "ACoAAProspect1")]
    row = db.execute("SELECT account_id, chat_id, body, sent_at IS NOT NULL FROM linkedin_messages").fetchone()
    assert row == (ACCOUNT, "R8J-xM9WX7eoHLp6gSVtWQ", "Hello, is the role still open?", True)
    assert db.execute("SELECT outcome FROM event_log").fetchall() == [("inbound",)]


def test_a_message_the_account_sent_itself_is_told_apart(stack, db):
    post(stack, sample_body("unipile_message_sent_by_account.json"))
    post(stack, unipile_message("from-prospect"))
    stack.drain()
    assert sorted(messages(db)) == [
        ("Zq0selfSentMessage01", "outbound", "ACoAAOwnUser"),
        ("from-prospect", "inbound", "ACoAAProspect1"),
    ]
    inbound = db.execute("SELECT count(*) FROM linkedin_messages WHERE direction = 'inbound'").fetchone()[0]
    assert inbound == 1


def test_is_sender_when_present_decides_the_direction(stack, db):
    data = json.loads(unipile_message("flagged", sender_id="ACoAAProspect1"))
    data["is_sender"] = True  # e.g. a payload customised to carry the message object's flag
    post(stack, json.dumps(data).encode())
    stack.drain()
    assert messages(db) == [("flagged", "outbound", "ACoAAProspect1")]


def test_a_redelivery_after_the_ingest_window_adds_no_second_row(stack, db):
    body = unipile_message("late-one")
    post(stack, body)
    stack.drain()
    with time_machine.travel(time.time() + 86_400 + 60, tick=True):
        late = post(stack, body)
        stack.drain()
    assert late.json()["accepted"] == 1
    assert messages(db) == [("late-one", "inbound", "ACoAAProspect1")]
    assert db.execute("SELECT outcome, deliveries FROM event_log").fetchall() == [("inbound", 2)]


def test_other_events_of_the_same_message_are_logged_not_recorded_as_messages(stack, db):
    post(stack, unipile_message("m-7"))
    post(stack, unipile_message("m-7", event="message_read"))
    stack.drain()
    assert messages(db) == [("m-7", "inbound", "ACoAAProspect1")]
    assert sorted(db.execute("SELECT kind, outcome FROM event_log").fetchall()) == [
        ("message_read", "recorded"),
        ("message_received", "inbound"),
    ]


def test_a_message_whose_sender_cannot_be_told_goes_to_quarantine(stack, db):
    data = json.loads(unipile_message("who-sent-this"))
    del data["account_info"]
    post(stack, json.dumps(data).encode())
    stack.drain()
    assert messages(db) == []
    (reason,) = db.execute("SELECT reason FROM quarantine WHERE provider = 'unipile'").fetchone()
    assert "cannot tell who sent" in reason


def test_a_non_linkedin_account_is_logged_only(stack, db):
    data = json.loads(unipile_message("wa-1"))
    data["account_type"] = "WHATSAPP"
    post(stack, json.dumps(data).encode())
    stack.drain()
    assert messages(db) == []
    assert db.execute("SELECT outcome FROM event_log").fetchall() == [("recorded",)]


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"content-type": "application/json"}, "missing_secret"),
        (unipile_headers("unipile-webhook-secret-guess"), "invalid_secret"),
        (unipile_headers(UNIPILE_SECRET + "x"), "invalid_secret"),
    ],
)
def test_missing_or_wrong_secret_is_401_json_and_nothing_queued(stack, headers, error):
    answer = post(stack, sample_body("unipile_message_received.json"), headers)
    assert answer.status == 401
    assert answer.json()["error"] == error
    assert stack.queue_depth("EventsQueue") == 0


def test_the_function_refuses_to_start_without_a_secret(stack, monkeypatch):
    monkeypatch.delenv("UNIPILE_WEBHOOK_SECRET")
    with pytest.raises(ConfigurationError):
        stack.handler(FUNCTION)


def test_the_header_name_comes_from_the_template_parameter(stack, monkeypatch):
    monkeypatch.setenv("UNIPILE_WEBHOOK_HEADER", "X-Unipile-Token")
    body = sample_body("unipile_message_received.json")
    assert post(stack, body).status == 401
    assert post(stack, body, unipile_headers(header="X-Unipile-Token")).status == 200
