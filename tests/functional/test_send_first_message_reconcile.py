"""A LinkedIn first message (a send that starts the chat) whose answer is lost is reconciled like any other:
the account's chats with that person are listed, then their messages; found -> sent (no resend), absent ->
pending and sent once. Real send worker and reaper, Postgres, the fake Unipile over HTTP."""

from __future__ import annotations

from tests.send_support import behave, delivered, drain, post_send, reap, row

ATTENDEE = "ACoAAB_first_contact"
CHAT = f"chat_acc_1_{ATTENDEE}"  # the id the fake gives the chat a first message starts


def first_message(stack, key: str, text: str) -> int:
    body = {"channel": "unipile", "sender_account": "acc_1", "recipient": ATTENDEE,
            "payload": {"text": text, "new_chat": True}}  # fmt: skip
    answer = post_send(stack, body, key=key)
    assert answer.status == 201
    return int(answer.json()["id"])


def test_a_first_message_whose_answer_was_lost_is_found_in_the_new_chat_and_not_resent(stack, db, monkeypatch):
    monkeypatch.setenv("SEND_PROVIDER_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    # GIVEN Unipile starts the chat and stores the message, but answers after the client's timeout
    behave(stack, "unipile.send", hang=2.0, hang_times=1)
    send_id = first_message(stack, "first-1", "Hi, we met at Techstars")
    drain(stack)
    assert row(db, send_id)["status"] == "unknown"
    # WHEN the reaper reconciles
    reap(["send_reconcile"])
    # THEN the chat was found through the person, the message in it: sent, recorded by reconciliation
    assert row(db, send_id)["status"] == "sent"
    assert db.execute("SELECT settled_by FROM sent_messages").fetchone()[0] == "reconciliation"
    assert stack.fakes.count("unipile.list_chats", ATTENDEE) == 1
    assert stack.fakes.count("unipile.list", CHAT) == 1
    drain(stack)
    assert delivered(stack, CHAT, "Hi, we met at Techstars") == 1
    assert stack.fakes.count("unipile.send") == 1


def test_a_first_message_that_never_arrived_is_sent_again_once(stack, db, monkeypatch):
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    # GIVEN Unipile answers 503 and did not start the chat
    behave(stack, "unipile.send", fail_times=1, fail_status=503)
    send_id = first_message(stack, "first-2", "Hello again")
    drain(stack)
    assert row(db, send_id)["status"] == "unknown"
    # WHEN reconciled: no chat with that person exists, so the message is not there
    reap(["send_reconcile"])
    assert row(db, send_id)["status"] == "pending"
    drain(stack)
    # THEN it is sent once
    assert row(db, send_id)["status"] == "sent"
    assert delivered(stack, CHAT, "Hello again") == 1
