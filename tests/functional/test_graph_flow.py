"""Graph mail -> ticket, end to end: the real handlers, serialised moto, Postgres, a fake Graph over HTTP."""

from __future__ import annotations

from tests.graph_support import add_mail, body, item, post


def test_one_mail_notified_created_then_updated_makes_one_ticket(stack, db):
    # GIVEN a new mail in the fake mailbox
    add_mail(stack, "m1", "<m1@example.com>")
    # WHEN Graph notifies "created", re-delivers it, then notifies "updated"
    first = post(stack, body(item("m1")))
    again = post(stack, body(item("m1")))
    updated = post(stack, body(item("m1", change="updated", etag='W/"etag-2"')))
    stack.drain()
    # THEN ingest accepted two distinct deliveries and stopped the re-delivery
    assert (first.status, first.json()["accepted"]) == (202, 1)
    assert (again.status, again.json()) == (202, {"accepted": 0, "duplicates": 1, "rejected": 0})
    assert updated.json()["accepted"] == 1
    # AND exactly one ticket exists, the "updated" notification stopped by Postgres
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    outcomes = sorted(r[0] for r in db.execute("SELECT outcome FROM event_log"))
    assert outcomes == ["duplicate", "ticket"]
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0


def test_reply_becomes_a_comment_on_the_existing_ticket(stack, db):
    add_mail(stack, "m1", "<m1@example.com>", conversation_id="conv-9")
    add_mail(stack, "m2", "<m2@example.com>", conversation_id="conv-9", in_reply_to="<m1@example.com>")
    post(stack, body(item("m1")))
    stack.drain()
    post(stack, body(item("m2")))
    stack.drain()
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    row = db.execute(
        "SELECT t.external_message_id FROM ticket_comments c JOIN tickets t ON t.id = c.ticket_id"
    ).fetchone()
    assert row == ("<m1@example.com>",)


def test_mail_deleted_before_fetch_is_recorded_not_retried(stack, db):
    post(stack, body(item("gone")))
    stack.drain()
    assert db.execute("SELECT outcome FROM event_log").fetchall() == [("message_gone",)]
    assert stack.fakes.count("graph.get_message", "gone") == 1
    assert stack.queue_depth("EventsDeadLetterQueue") == 0


def test_validation_handshake_echoes_decoded_token(stack):
    answer = stack.invoke_http(
        "GraphIngestFunction", "POST", "http://x/webhooks/graph?validationToken=Validation%3A%20Testing%20%26%20more"
    )
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.body == b"Validation: Testing & more"
