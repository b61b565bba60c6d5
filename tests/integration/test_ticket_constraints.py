"""The last lines of defence of the mail -> ticket path, on the real Postgres."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from exactly_once.core.events import InboundEvent
from exactly_once.flows.graph.client import MailMessage
from exactly_once.flows.graph.tickets import apply_mail


def mail(imid: str, subject: str = "Help", refs: tuple[str, ...] = (), conv: str | None = None) -> MailMessage:
    return MailMessage("gid", imid, conv, subject, "a@example.com", "preview", refs)


def event(key: str) -> InboundEvent:
    return InboundEvent("graph", key, "graph:mailbox:u", "created", {"resource": "Users/u/Messages/m"})


def _waits_on_a_lock(database_url: str, pid: int, timeout: float = 20.0) -> bool:
    """Poll pg_stat_activity until backend ``pid`` waits on a lock (a sleep would guess, on a busy machine)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as watcher:  # autocommit: a fresh stats snapshot each time
        while time.monotonic() < deadline:
            row = watcher.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            if row and row[0] == "Lock":
                return True
            time.sleep(0.02)
    return False


@pytest.fixture
def conn(db, database_url):
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def test_a_writer_outside_the_lock_makes_the_insert_conflict_and_it_is_recovered(conn, database_url, db):
    # GIVEN another writer (not using the advisory lock) inserted the ticket and has not committed yet
    other = psycopg.connect(database_url)
    other.execute("INSERT INTO tickets (external_message_id, mailbox) VALUES ('<race@x>', 'u')")
    result: dict[str, object] = {}
    worker = threading.Thread(target=lambda: result.update(r=apply_mail(conn, mail("<race@x>"), event("k1"), "u")))
    # WHEN the worker's statement runs (its check cannot see the uncommitted row, its INSERT waits on it)
    worker.start()
    assert _waits_on_a_lock(database_url, conn.info.backend_pid), "the worker's INSERT never waited on the row"
    other.commit()
    other.close()
    worker.join(10)
    # THEN the ON CONFLICT path resolves to the winner's row: recovered, not an error, not a second ticket
    outcome = result["r"]
    assert outcome.outcome == "recovered"
    assert outcome.existing_kind == "ticket"
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert db.execute("SELECT outcome FROM event_log").fetchall() == [("recovered",)]


def test_a_unique_violation_without_a_winning_row_goes_to_quarantine(conn, db):
    # GIVEN a constraint the statement cannot absorb (a trigger standing in for a legacy unique index)
    db.execute(
        """CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN IF NEW.subject = 'poison' THEN
             RAISE unique_violation USING MESSAGE = 'duplicate key value violates unique constraint';
           END IF; RETURN NEW; END $$"""
    )
    db.execute("CREATE TRIGGER poison BEFORE INSERT ON tickets FOR EACH ROW EXECUTE FUNCTION poison()")
    try:
        outcome = apply_mail(conn, mail("<p@x>", subject="poison"), event("k2"), "u")
    finally:
        db.execute("DROP TRIGGER poison ON tickets")
        db.execute("DROP FUNCTION poison()")
    # THEN nothing is lost: the notification waits in quarantine with the reason
    assert outcome.outcome == "quarantined"
    row = db.execute("SELECT external_id, reason, status FROM quarantine").fetchone()
    assert row[0] == "<p@x>" and "unique violation" in row[1] and row[2] == "open"
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 0
    # AND a later delivery of the same mail is stopped by the quarantine row, not turned into a ticket
    again = apply_mail(conn, mail("<p@x>"), event("k3"), "u")
    assert (again.outcome, again.existing_kind) == ("duplicate", "quarantine")


def test_reply_by_references_header_joins_the_ticket_even_in_another_conversation(conn, db):
    first = apply_mail(conn, mail("<a@x>", conv="c1"), event("a"), "u")
    reply = apply_mail(conn, mail("<b@x>", refs=("<a@x>",), conv="c2"), event("b"), "u")
    reply_of_reply = apply_mail(conn, mail("<c@x>", refs=("<b@x>",), conv="c3"), event("c"), "u")
    assert first.outcome == "ticket"
    assert reply.outcome == "comment" and reply_of_reply.outcome == "comment"
    assert db.execute("SELECT count(DISTINCT ticket_id) FROM ticket_comments").fetchone()[0] == 1
