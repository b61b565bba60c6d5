"""Graph mark-as-read (GRAPH_MARK_READ): once per ticketed mail, never before its ticket commits.

The real ingest and worker, the send worker and the reapers, Postgres, a fake Graph over HTTP that
records every PATCH of ``isRead``.
"""

from __future__ import annotations

import time

import pytest

from tests.graph_support import USER, add_mail, body, item, post
from tests.send_support import behave, drain, reap


@pytest.fixture
def marks(monkeypatch):
    monkeypatch.setenv("GRAPH_MARK_READ", "true")


def _read_sends(db) -> list[tuple[str, str, str]]:
    return db.execute(
        "SELECT sender_account, recipient, status::text FROM send_queue WHERE channel = 'graph' ORDER BY recipient"
    ).fetchall()


def _is_read(stack, mid: str) -> bool:
    return bool(stack.fakes.state["graph_messages"][(USER, mid)].get("isRead"))


def test_each_ticketed_mail_is_marked_read_once(stack, db, marks):
    # GIVEN two new mails and a reply to the first (a comment)
    add_mail(stack, "r1", "<r1@example.com>", conversation_id="conv-r1")
    add_mail(stack, "r2", "<r2@example.com>", conversation_id="conv-r2")
    add_mail(stack, "r3", "<r3@example.com>", conversation_id="conv-r1", in_reply_to="<r1@example.com>")
    # WHEN Graph notifies them in one delivery (the worker's batch path), the reply alone (one by one),
    # and notifies all of them again as "updated"
    assert post(stack, body(item("r1"), item("r2"))).json()["accepted"] == 2
    stack.drain()
    assert post(stack, body(item("r3"))).json()["accepted"] == 1
    stack.drain()
    updated = [item(m, change="updated", etag='W/"2"') for m in ("r1", "r2", "r3")]
    assert post(stack, body(*updated)).json()["accepted"] == 3
    stack.drain()
    drain(stack)
    # THEN two tickets and a comment, each mail's send row sent, one PATCH per mail, every mail read
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM ticket_comments").fetchone()[0] == 1
    assert _read_sends(db) == [(USER, m, "sent") for m in ("r1", "r2", "r3")]
    for m in ("r1", "r2", "r3"):
        assert stack.fakes.delivered("graph.mark_read", m) == 1
        assert _is_read(stack, m)
    assert stack.fakes.refused("graph.mark_read") == 0


def test_off_by_default_nothing_is_marked(stack, db):
    add_mail(stack, "o1", "<o1@example.com>")
    post(stack, body(item("o1")))
    stack.drain()
    drain(stack)
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert _read_sends(db) == []
    assert stack.fakes.count("graph.mark_read") == 0


def test_no_mark_without_a_ticket(stack, db, marks):
    # GIVEN a mail deleted before the worker fetched it: no ticket
    post(stack, body(item("gone")))
    stack.drain()
    drain(stack)
    # THEN no send row and no PATCH
    assert db.execute("SELECT outcome FROM event_log").fetchall() == [("message_gone",)]
    assert _read_sends(db) == []
    assert stack.fakes.count("graph.mark_read") == 0


def test_a_lost_relay_is_swept_and_marked_once(stack, db, marks, monkeypatch):
    # GIVEN the relay after the ticket's commit cannot reach SQS
    from exactly_once.sends import queue as send_queue

    add_mail(stack, "l1", "<l1@example.com>")

    def unreachable(ids):
        raise send_queue.ConfigurationError("SEND_QUEUE_URL unreachable (test)")

    with monkeypatch.context() as patched:
        patched.setattr(send_queue, "relay", unreachable)
        post(stack, body(item("l1")))
        stack.drain()
    # THEN the ticket and its pending row committed together, nothing on the send queue yet
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert _read_sends(db) == [(USER, "l1", "pending")]
    assert drain(stack) == 0
    # WHEN the outbox sweeper runs past its grace
    monkeypatch.setenv("SEND_RELAY_GRACE_SECONDS", "0")
    assert reap(["send_outbox"])["send_outbox"] == 1
    drain(stack)
    # THEN the mail is marked read, once
    assert _read_sends(db) == [(USER, "l1", "sent")]
    assert stack.fakes.delivered("graph.mark_read", "l1") == 1


def test_timeout_after_the_mark_reconciles_to_sent_without_a_second_patch(stack, db, marks, monkeypatch):
    monkeypatch.setenv("GRAPH_TIMEOUT", "1")
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    add_mail(stack, "t1", "<t1@example.com>")
    # GIVEN Graph marks the mail but answers after the client's timeout (and again on its retries)
    behave(stack, "graph.mark_read", hang=1.5, hang_times=3)
    post(stack, body(item("t1")))
    stack.drain()
    drain(stack)
    assert _read_sends(db) == [(USER, "t1", "unknown")]
    time.sleep(1.6)  # the hung answers finish at the fake
    attempts = stack.fakes.count("graph.mark_read", "t1")
    # WHEN the reaper reconciles: Graph says the mail is read
    reap(["send_reconcile"])
    drain(stack)
    # THEN the row is sent, settled by reconciliation, and no PATCH was made after the unknown
    assert _read_sends(db) == [(USER, "t1", "sent")]
    assert db.execute("SELECT settled_by FROM sent_messages WHERE channel = 'graph'").fetchone()[0] == "reconciliation"
    assert stack.fakes.count("graph.mark_read", "t1") == attempts
    assert _is_read(stack, "t1")


def test_mail_deleted_before_the_mark_fails_the_row_without_retries(stack, db, marks):
    add_mail(stack, "d1", "<d1@example.com>")
    post(stack, body(item("d1")))
    stack.drain()
    del stack.fakes.state["graph_messages"][(USER, "d1")]
    drain(stack)
    (status, error) = db.execute("SELECT status::text, last_error FROM send_queue WHERE channel = 'graph'").fetchone()
    assert status == "failed" and "404" in error
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1  # the ticket stands
