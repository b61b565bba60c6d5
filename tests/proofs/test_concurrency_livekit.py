"""LiveKit storms: the seed-001 race at 100x, from spawned processes running the real handlers."""

from __future__ import annotations

import time

import pytest
import time_machine

from devstack.fakes import Behaviour
from exactly_once.core.events import InboundEvent
from tests.livekit_support import FUNCTION, URL, add_feedback, encode, feedback_row, headers, post, room_event
from tests.proofs.concurrency_support import COPIES, PROCESSES, SPREAD_HOURS, THREADS, http_storm, worker_storm

pytestmark = pytest.mark.slow

ROOM = "RM_ZbhL7XyXTZxz"


def test_hundred_identical_room_finished_deliveries_from_four_processes_make_one_analysis(stack, db, proof):
    fid = add_feedback(db)
    raw = encode(room_event(event_id="EV_storm_100"))
    # WHEN LiveKit's webhook hits the real ingest handler 100 times at once from 4 processes
    storm = http_storm(stack.env, FUNCTION, ("POST", URL, raw, headers(raw)))
    # THEN all are answered 200, ingest let one through, and the model was asked once
    assert storm.statuses == [200] * COPIES  # each delivery's final answer (a 503 in_progress is retried)
    assert storm.in_flight >= 2
    queued = stack.queue_depth("EventsQueue")
    assert queued == 1
    stack.drain()
    calls = stack.fakes.delivered("llm.chat", ROOM)
    assert calls == stack.fakes.count("llm.chat", ROOM) == 1
    assert feedback_row(db, fid)["status"] == "completed"
    analyses = db.execute("SELECT count(*) FROM user_feedback WHERE status = 'completed'").fetchone()[0]
    proof.record(
        kind="concurrency",
        flow="livekit",
        name=f"{COPIES} identical room_finished at once (ingest), {PROCESSES} processes x {THREADS} threads",
        cases=COPIES,
        held=f"{storm.statuses.count(200)} x 200, {queued} queued, {analyses} completed analysis, {calls} LLM call"
        + f"; {storm.in_flight} in flight at once, {storm.retried} x 503 in_progress retried",
    )


def test_hundred_identical_messages_racing_four_workers_make_one_analysis(stack, db, proof):
    fid = add_feedback(db)
    body = room_event(event_id="EV_storm_workers")
    message = InboundEvent("livekit", "livekit:EV_storm_workers", f"livekit:room:{ROOM}", "room_finished", body)
    stack.fakes.behaviours["llm.chat"] = Behaviour(delay=0.5)  # the claim is held while the copies arrive
    # WHEN ingest is bypassed: 100 copies reach 4 worker processes at once (only the Postgres claim can stop them)
    storm = worker_storm(stack.env, message.to_message())
    failures = sum(storm.statuses)
    assert len(storm.statuses) == COPIES and storm.in_flight >= 2
    # THEN one claim won, every other copy was acknowledged as a duplicate, and the model was asked once
    assert failures == 0
    calls = stack.fakes.delivered("llm.chat", ROOM)
    assert calls == stack.fakes.count("llm.chat", ROOM) == 1
    row = feedback_row(db, fid)
    assert (row["status"], row["attempts"]) == ("completed", 1)
    logged = db.execute("SELECT outcome, deliveries FROM event_log").fetchall()
    assert logged == [("completed", COPIES)]
    proof.record(
        kind="concurrency",
        flow="livekit",
        name=f"{COPIES} identical queue messages, {PROCESSES} worker processes x {THREADS} threads (claim only)",
        cases=COPIES,
        held=f"{failures} failures, {row['attempts']} claim, {calls} LLM call, "
        f"{logged[0][1] - row['attempts']} duplicates acknowledged; "
        f"{storm.in_flight} in flight at once",
    )


def test_redeliveries_spread_over_and_past_the_dedup_window_make_one_analysis(stack, db, proof):
    fid = add_feedback(db)
    raw = encode(room_event(event_id="EV_spread"))
    answers = []
    base = time.time()
    # WHEN LiveKit's event comes again across the 24 h ingest window and once past it
    for hours in SPREAD_HOURS:
        with time_machine.travel(base + hours * 3600):
            answers.append(post(stack, raw, headers(raw, ttl_seconds=300)).json())
            stack.drain()
    inside = [a for h, a in zip(SPREAD_HOURS, answers, strict=True) if h < 24]
    # THEN ingest stops those inside the window, and the claim stops the late one
    assert [a["accepted"] for a in inside] == [1] + [0] * (len(inside) - 1)
    late = answers[-1]["accepted"]
    assert late == 1
    calls = stack.fakes.delivered("llm.chat", ROOM)
    assert calls == stack.fakes.count("llm.chat", ROOM) == 1
    assert feedback_row(db, fid)["status"] == "completed"
    assert db.execute("SELECT outcome, deliveries FROM event_log").fetchall() == [("completed", 2)]
    stopped = sum(1 for a in inside if a["accepted"] == 0)
    proof.record(
        kind="window",
        flow="livekit",
        name=f"re-deliveries over {max(SPREAD_HOURS):g} h (simulated clock)",
        cases=len(answers),
        held=f"{stopped} stopped at ingest, {late} past the window stopped by the claim, {calls} LLM call",
    )
