"""The race of the LiveKit feedback incident and what it left open: identical room_finished deliveries at once
from several processes, a worker killed while holding the claim, and a stale worker answering after its lease."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from devstack.fakes import Behaviour
from exactly_once.core.events import InboundEvent
from tests.livekit_support import FUNCTION, URL, add_feedback, encode, feedback_row, headers, reap, room_event
from tests.procs import deliver, run_parallel, work

pytestmark = pytest.mark.slow


def queue_message(body: dict) -> str:
    """The events-queue message ingest makes of a delivery (what SQS hands the worker again and again)."""
    event = InboundEvent("livekit", f"livekit:{body['id']}", f"livekit:room:{body['room']['sid']}", body["event"], body)
    return event.to_message()


def split(items: list, parts: int) -> list[list]:
    return [items[i::parts] for i in range(parts)]


def test_storms_of_3_and_50_identical_deliveries_make_exactly_one_analysis_per_room(stack, db):
    rooms = {3: "RM_storm_three", 50: "RM_storm_fifty"}
    ids = {n: add_feedback(db, sid=sid, name=f"storm-{n}") for n, sid in rooms.items()}
    bodies = {n: room_event(sid=sid, name=f"storm-{n}", event_id=f"EV_storm_{n}") for n, sid in rooms.items()}
    stack.fakes.behaviours["llm.chat"] = Behaviour(delay=0.3)  # a slow model: every claim overlaps the others

    # WHEN LiveKit's webhook is delivered 3 times, then 50 times, at once, from 4 processes
    for n in (3, 50):
        raw = encode(bodies[n])
        request = ("POST", URL, raw, headers(raw))
        start = time.time() + 3
        statuses = run_parallel(deliver, [(stack.env, FUNCTION, part, start) for part in split([request] * n, 4)])
        # THEN every delivery is answered 200 and ingest lets one through
        assert sorted(s for per_proc in statuses for s in per_proc) == [200] * n
    assert stack.queue_depth("EventsQueue") == 2

    # WHEN the worker receives each queued event 50 times at once in 4 processes (what a redelivery storm
    # past the ingest window looks like: only the Postgres claim can stop it)
    messages = [queue_message(bodies[n]) for n in (3, 50)] * 50
    start = time.time() + 3
    assert run_parallel(work, [(stack.env, part, start) for part in split(messages, 4)]) == [0, 0, 0, 0]
    stack.drain()  # and the copy ingest queued

    # THEN one analysis per room: LLM calls per unique room_finished = 1.00
    for n, sid in rooms.items():
        assert stack.fakes.count("llm.chat", sid) == 1, n
        row = feedback_row(db, ids[n])
        assert (row["status"], row["attempts"]) == ("completed", 1)
    # AND every delivery that reached the worker is counted in the event log, settled as completed
    log = db.execute("SELECT event_key, outcome, deliveries FROM event_log ORDER BY event_key").fetchall()
    assert log == [("livekit:EV_storm_3", "completed", 51), ("livekit:EV_storm_50", "completed", 51)]


def _crash(stack, point: str, message: str) -> None:
    env = {**stack.env, "EO_CRASH_AT": point, "LIVEKIT_CLAIM_LEASE_SECONDS": "1"}
    with pytest.raises(Exception):  # noqa: B017 - the child dies by SIGKILL: BrokenProcessPool
        run_parallel(work, [(env, [message], time.time())], 1)


def test_worker_killed_after_the_claim_is_reclaimed_by_the_reaper_and_completed_once(stack, db):
    fid = add_feedback(db)
    message = queue_message(room_event(event_id="EV_crash_claim"))
    # GIVEN a worker SIGKILLed right after claiming the room (before calling the LLM)
    _crash(stack, "livekit.worker.after_claim", message)
    row = feedback_row(db, fid)
    assert (row["status"], row["attempts"]) == ("processing", 1)
    assert stack.fakes.count("llm.chat") == 0
    # WHEN its lease runs out and the scheduled reaper runs
    time.sleep(1.2)
    assert reap(stack) == 1
    assert feedback_row(db, fid)["status"] == "initiated"
    assert stack.queue_depth("EventsQueue") == 1  # the re-drive
    stack.drain()
    # THEN a new claim completed it, with one LLM call
    row = feedback_row(db, fid)
    assert (row["status"], row["attempts"]) == ("completed", 2)
    assert "lease expired" in row["last_error"]
    assert stack.fakes.count("llm.chat") == 1
    # AND when SQS redelivers the dead worker's message, nothing more happens
    assert run_parallel(work, [(stack.env, [message], time.time())], 1) == [0]
    assert stack.fakes.count("llm.chat") == 1
    assert feedback_row(db, fid) == row


def test_worker_killed_after_the_llm_answer_is_completed_once_by_the_next_claim(stack, db):
    fid = add_feedback(db)
    _crash(stack, "livekit.worker.after_llm", queue_message(room_event(event_id="EV_crash_llm")))
    assert stack.fakes.count("llm.chat") == 1
    time.sleep(1.2)
    assert reap(stack) == 1
    stack.drain()
    row = feedback_row(db, fid)
    assert (row["status"], row["attempts"]) == ("completed", 2)
    # The dead worker's answer was lost with it: the model was asked again (at-least-once towards the
    # LLM), but exactly one result is stored, by the claim that holds the row.
    assert stack.fakes.count("llm.chat") == 2
    assert row["analysis"]["attempt"] == 2


def test_stale_worker_answering_after_its_lease_changes_nothing(stack, db):
    fid = add_feedback(db)
    message = queue_message(room_event(event_id="EV_stale"))
    # GIVEN worker A (its own process, lease 1 s) whose LLM call hangs for 4 s
    stack.fakes.behaviours["llm.chat"] = Behaviour(hang=4.0, hang_times=1)
    env = {**stack.env, "LIVEKIT_CLAIM_LEASE_SECONDS": "1"}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        worker_a = pool.submit(work, env, [message], time.time())
        deadline = time.time() + 60
        while feedback_row(db, fid)["status"] != "processing":
            assert time.time() < deadline and not worker_a.done()
            time.sleep(0.05)
        # WHEN A's lease runs out, the reaper reclaims the row and worker B completes it
        time.sleep(1.2)
        assert reap(stack) == 1
        stack.drain()
        after_b = feedback_row(db, fid)
        assert (after_b["status"], after_b["attempts"]) == ("completed", 2)
        assert not worker_a.done()  # A is still waiting for its model
        # THEN A's late completion (fenced on its old claim token) is rejected, and A acknowledges
        assert worker_a.result(timeout=60) == 0
    assert feedback_row(db, fid) == after_b
    # the model was asked twice, first by A's claim, then by B's; the stored result is B's (attempt 2)
    keys = stack.fakes.state["llm_idempotency_keys"]
    assert len(keys) == 2 and keys[1] == f"feedback-{fid}-{after_b['claim_token']}" and keys[0] != keys[1]
    assert after_b["analysis"]["attempt"] == 2
    assert db.execute("SELECT outcome FROM event_log").fetchall() == [("completed",)]
