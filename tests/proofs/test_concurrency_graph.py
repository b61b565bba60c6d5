"""Graph: 100 identical deliveries from 4 processes at once, 100 identical queue messages racing 4 workers,
and re-deliveries spread over (and past) the 24-hour dedup window on a simulated clock -> one ticket."""

from __future__ import annotations

import time

import pytest
import time_machine

from exactly_once.core.events import InboundEvent
from exactly_once.flows.graph.adapter import item_key
from tests.graph_support import HEADERS, URL, add_mail, body, item, post
from tests.proofs.concurrency_support import COPIES, PROCESSES, SPREAD_HOURS, THREADS, http_storm, worker_storm

pytestmark = pytest.mark.slow


def test_hundred_identical_deliveries_from_four_processes_make_one_ticket(stack, db, proof):
    add_mail(stack, "s1", "<s1@example.com>")
    payload = body(item("s1")).encode()
    # WHEN 100 identical notifications hit the real ingest handler from 4 processes at once
    storm = http_storm(stack.env, "GraphIngestFunction", ("POST", URL, payload, HEADERS))
    # THEN all are acknowledged, ingest let one through, one ticket
    assert storm.statuses == [202] * COPIES  # each delivery's final answer (a 503 in_progress is retried)
    assert storm.in_flight >= 2
    queued = stack.queue_depth("EventsQueue")
    assert queued == 1
    stack.drain()
    tickets = db.execute("SELECT count(*) FROM tickets").fetchone()[0]
    fetches = stack.fakes.count("graph.get_message", "s1")
    assert (tickets, fetches) == (1, 1)
    proof.record(
        kind="concurrency",
        flow="graph",
        name=f"{COPIES} identical deliveries at once (ingest), {PROCESSES} processes x {THREADS} threads",
        cases=COPIES,
        held=f"{storm.statuses.count(202)} x 202, {queued} queued, {tickets} ticket, {fetches} Graph fetch"
        + f"; {storm.in_flight} in flight at once, {storm.retried} x 503 in_progress retried",
    )


def test_hundred_identical_messages_racing_four_workers_make_one_ticket(stack, db, proof):
    add_mail(stack, "s2", "<s2@example.com>")
    it = item("s2")
    message = InboundEvent("graph", item_key(it), "graph:mailbox:u", "created", it).to_message()
    # WHEN ingest is bypassed: 100 copies of the message reach 4 worker processes at once
    storm = worker_storm(stack.env, message)
    failures = sum(storm.statuses)
    assert len(storm.statuses) == COPIES and storm.in_flight >= 2
    # THEN Postgres alone keeps it to one ticket, and every copy is settled (none retried forever)
    assert failures == 0
    tickets = db.execute("SELECT count(*) FROM tickets").fetchone()[0]
    quarantined = db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert (tickets, quarantined) == (1, 0)
    assert db.execute("SELECT deliveries FROM event_log").fetchone()[0] >= 1
    proof.record(
        kind="concurrency",
        flow="graph",
        name=f"{COPIES} identical queue messages, {PROCESSES} worker processes x {THREADS} threads (Postgres only)",
        cases=COPIES,
        held=f"{failures} failures, {tickets} ticket, {quarantined} quarantined; {storm.in_flight} in flight at once",
    )


def test_redeliveries_spread_over_and_past_the_dedup_window_make_one_ticket(stack, db, proof):
    add_mail(stack, "s3", "<s3@example.com>")
    payload = body(item("s3")).encode()
    answers = []

    base = time.time()
    # WHEN Graph re-delivers at 0 h, 36 s, 1 h, 4 h, 12 h, 23.9 h (inside the window) and 24.5 h (past it)
    for hours in SPREAD_HOURS:
        with time_machine.travel(base + hours * 3600):
            answers.append(post(stack, payload).json())
            stack.drain()
    # THEN ingest stops every re-delivery inside the window, lets the late one in, and Postgres stops that
    inside = [a for h, a in zip(SPREAD_HOURS, answers, strict=True) if h < 24]
    assert [a["accepted"] for a in inside] == [1] + [0] * (len(inside) - 1)
    late = answers[-1]["accepted"]
    assert late == 1
    tickets = db.execute("SELECT count(*) FROM tickets").fetchone()[0]
    deliveries = db.execute("SELECT deliveries FROM event_log").fetchone()[0]
    assert (tickets, deliveries) == (1, 2)
    assert stack.fakes.count("graph.get_message", "s3") == 1
    stopped = sum(1 for a in inside if a["accepted"] == 0)
    proof.record(
        kind="window",
        flow="graph",
        name=f"re-deliveries over {max(SPREAD_HOURS):g} h (simulated clock)",
        cases=len(answers),
        held=f"{stopped} stopped at ingest, {late} past the window stopped by Postgres, {tickets} ticket",
    )
