"""Graph: SIGKILL at every boundary of ingest and worker, then retries and SQS redelivery -> one ticket per mail."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import Any

import pytest

from exactly_once.flows.graph import mailboxes
from exactly_once.flows.graph.resync import resync_mailbox
from exactly_once.ops.reapers import run_all
from tests.graph_support import HEADERS, URL, USER, add_mail, body, item, post
from tests.proofs.crash_support import (
    after_invocation_deadline,
    dlq_depth,
    kill_call,
    kill_http,
    kill_poll,
    redrive,
)

pytestmark = pytest.mark.slow

FLOW = "graph"
INGEST = "GraphIngestFunction"
MAILS = ("c1", "c2", "c3")  # one delivery carries three notifications: a crash must lose none of them
RESYNC = "exactly_once.flows.graph.resync:resync_mailbox"


def _setup(stack: Any) -> bytes:
    for m in MAILS:
        add_mail(stack, m, f"<{m}@example.com>", conversation_id=f"conv-{m}")
    return body(*(item(m) for m in MAILS)).encode()


def _graph_retries(stack: Any, payload: bytes) -> None:
    """Graph retries an unanswered delivery; once the dead invocation's deadline passes ingest takes it again."""
    early = post(stack, payload)
    # the reservations are still live: a 503, so Graph retries (a 202 would lose what never reached the queue)
    assert early.status == 503 and early.json()["error"] == "in_progress"
    with after_invocation_deadline(INGEST):
        late = post(stack, payload)
    assert late.status == 202


def crash_ingest_after_dedup(stack: Any, db: Any) -> dict[str, int]:
    payload = _setup(stack)
    kill_http(stack, "graph.ingest.after_dedup", INGEST, "POST", URL, payload, HEADERS)
    assert stack.queue_depth("EventsQueue") == 0  # died before SendMessageBatch
    _graph_retries(stack, payload)
    stack.drain()
    return {"retries": 2}


def crash_ingest_after_enqueue(stack: Any, db: Any) -> dict[str, int]:
    payload = _setup(stack)
    kill_http(stack, "graph.ingest.after_enqueue", INGEST, "POST", URL, payload, HEADERS)
    assert stack.queue_depth("EventsQueue") == len(MAILS)  # queued, but the reservations never completed
    _graph_retries(stack, payload)  # may enqueue all three again: Postgres must stop them
    stack.drain()
    return {"retries": 2}


def crash_worker_after_fetch(stack: Any, db: Any) -> dict[str, int]:
    assert post(stack, _setup(stack)).json()["accepted"] == len(MAILS)
    kill_poll(stack, "graph.worker.after_fetch")
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 0  # nothing committed
    redrive(stack)
    return {"retries": 1}


def crash_worker_after_commit(stack: Any, db: Any) -> dict[str, int]:
    assert post(stack, _setup(stack)).json()["accepted"] == len(MAILS)
    kill_poll(stack, "graph.worker.after_commit")
    # the batch's three effects committed together (one commit per SQS batch), none acknowledged
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == len(MAILS)
    redrive(stack)
    return {"retries": 1}


def crash_worker_after_commit_one(stack: Any, db: Any) -> dict[str, int]:
    _setup(stack)
    # one mail alone on the queue: a batch of one is settled one by one (process(), apply_mail's own commit)
    first, *rest = MAILS
    assert post(stack, body(item(first)).encode()).json()["accepted"] == 1
    kill_poll(stack, "graph.worker.after_commit_one")
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1  # committed, never acknowledged
    # the other mails arrive while the first is in flight; the redelivered one comes back with them
    assert post(stack, body(*(item(m) for m in rest)).encode()).json()["accepted"] == len(rest)
    redrive(stack)
    return {"retries": 1}


def crash_resync_after_page_queued(stack: Any, db: Any) -> dict[str, int]:
    # the mails were never notified (a `missed`); the mailbox is watched and resynced one mail per page
    _setup(stack)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for m in MAILS:
        stack.fakes.state["graph_messages"][(USER, m)]["receivedDateTime"] = now
    mailboxes.watch(db, USER, "inbox")
    one_per_page = {"GRAPH_RESYNC_PAGE_SIZE": "1"}
    kill_call(stack, "graph.resync.after_page_queued", RESYNC, USER, extra_env=one_per_page)
    # the first page's mail is queued, its link never stored, the dead run's claim still leased
    assert stack.queue_depth("EventsQueue") == 1
    assert db.execute("SELECT page_link, delta_link FROM graph_mailboxes").fetchone() == (None, None)
    # the next run (after the lease) starts again from the stored position: the first page comes twice
    os.environ.update(one_per_page)
    try:
        assert resync_mailbox(USER, after_minutes=6) == f"done:{len(MAILS)}"
    finally:
        os.environ.pop("GRAPH_RESYNC_PAGE_SIZE")
    stack.drain()
    return {"retries": 1}


SCENARIOS: dict[str, Callable[[Any, Any], dict[str, int]]] = {
    "graph.ingest.after_dedup": crash_ingest_after_dedup,
    "graph.ingest.after_enqueue": crash_ingest_after_enqueue,
    "graph.worker.after_fetch": crash_worker_after_fetch,
    "graph.worker.after_commit": crash_worker_after_commit,
    "graph.worker.after_commit_one": crash_worker_after_commit_one,
    "graph.resync.after_page_queued": crash_resync_after_page_queued,
}


@pytest.mark.parametrize("boundary", sorted(SCENARIOS))
def test_sigkill_at_boundary_then_recovery_makes_each_ticket_once(stack, db, proof, boundary):
    # GIVEN three new mails, WHEN a handler is SIGKILLed at the boundary and retries/redelivery run
    SCENARIOS[boundary](stack, db)
    # THEN every mail has exactly one ticket, nothing is quarantined, parked or left queued
    tickets = dict(db.execute("SELECT external_message_id, count(*) FROM tickets GROUP BY 1").fetchall())
    assert tickets == {f"<{m}@example.com>": 1 for m in MAILS}
    assert db.execute("SELECT count(*) FROM ticket_comments").fetchone()[0] == 0
    quarantined = db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert quarantined == 0
    assert stack.queue_depth("EventsQueue") == 0 and dlq_depth(stack) == 0
    lost = sum(1 for m in MAILS if f"<{m}@example.com>" not in tickets)
    settled = dict(db.execute("SELECT outcome, count(*) FROM event_log GROUP BY 1").fetchall())
    assert settled.get("ticket") == len(MAILS)
    proof.record(
        kind="crash",
        flow=FLOW,
        name=boundary,
        cases=len(MAILS),
        held=f"{len(tickets)}/{len(MAILS)} mails -> {max(tickets.values())} ticket each; "
        f"{lost} lost, {quarantined} quarantined",
    )


@pytest.mark.parametrize("boundary", ["graph.worker.after_commit", "graph.worker.after_commit_one"])
def test_mark_read_survives_a_sigkill_after_the_ticket_commit(stack, db, proof, monkeypatch, boundary):
    # GIVEN mark-as-read on (GraphMarkRead): each ticket's send row commits in the ticket's transaction
    monkeypatch.setenv("GRAPH_MARK_READ", "true")
    monkeypatch.setenv("SEND_RELAY_GRACE_SECONDS", "0")
    mails = MAILS if boundary == "graph.worker.after_commit" else MAILS[:1]  # a batch of one: one by one
    payload = _setup(stack) if len(mails) > 1 else body(item(mails[0])).encode()
    if len(mails) == 1:
        add_mail(stack, mails[0], f"<{mails[0]}@example.com>")
    assert post(stack, payload).json()["accepted"] == len(mails)
    # WHEN the worker is SIGKILLed after the commit, before the relay, and SQS redelivers the events
    kill_poll(stack, boundary, extra_env={"GRAPH_MARK_READ": "true"})
    rows = db.execute("SELECT status::text FROM send_queue WHERE channel = 'graph'").fetchall()
    assert rows == [("pending",)] * len(mails)  # committed with the tickets, never relayed
    assert stack.queue_depth("SendQueue") == 0
    redrive(stack)  # duplicates now: stopped at the event log, nothing enqueued again
    # AND the send queue's outbox sweeper runs, then the send worker
    swept = run_all(db, only=["send_outbox"])["send_outbox"]
    stack.drain("SendWorkerFunction", "SendQueue")
    # THEN every mail has one ticket and was marked read by exactly one PATCH
    patches = {m: stack.fakes.delivered("graph.mark_read", m) for m in mails}
    assert patches == {m: 1 for m in mails}
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == len(mails)
    sent = db.execute("SELECT count(*) FROM send_queue WHERE channel = 'graph' AND status = 'sent'").fetchone()[0]
    assert sent == len(mails) and swept == len(mails)
    proof.record(
        kind="crash",
        flow=FLOW,
        name=f"{boundary} (mark as read)",
        cases=len(mails),
        held=f"{len(mails)} mails -> {max(patches.values())} PATCH isRead each after the sweeper; 0 lost",
    )
