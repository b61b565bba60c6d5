"""LiveKit: SIGKILL at every boundary of ingest, worker and reaper, then LiveKit's retries, SQS redelivery,
the lease and the reaper -> one completed analysis per room, never two stored."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.livekit_support import FUNCTION, URL, add_feedback, encode, feedback_row, headers, post, reap, room_event
from tests.proofs.children import run_child
from tests.proofs.crash_support import (
    after_invocation_deadline,
    crash_env,
    dlq_depth,
    expect_death,
    kill_http,
    kill_poll,
    redrive,
)

pytestmark = pytest.mark.slow

FLOW = "livekit"
ROOM = "RM_ZbhL7XyXTZxz"
LEASE = "1"  # seconds: the crashed worker's claim expires during the test


def reap_step() -> int:
    """The LiveKit reaper in a child, on the child's own connection."""
    from exactly_once.core import db
    from exactly_once.flows.livekit import reaper as feedback_reaper

    return feedback_reaper.reap(db.connection())


def late_step() -> int:
    """The LiveKit late-row reaper in a child, on the child's own connection."""
    from exactly_once.core import db
    from exactly_once.flows.livekit import reaper as feedback_reaper

    return feedback_reaper.redrive_late_rows(db.connection())


def _body() -> bytes:
    return encode(room_event(event_id="EV_crash_proof"))


def _short_lease(stack: Any) -> None:
    stack.env["LIVEKIT_CLAIM_LEASE_SECONDS"] = LEASE  # children inherit stack.env


def _reclaim(stack: Any) -> None:
    """The dead worker's lease runs out; the scheduled reaper hands the row to a new claim."""
    time.sleep(float(LEASE) + 0.3)
    assert reap(stack) == 1
    stack.drain()


def crash_ingest_after_dedup(stack: Any, db: Any) -> int:
    body = _body()
    kill_http(stack, "livekit.ingest.after_dedup", FUNCTION, "POST", URL, body, headers(body))
    assert stack.queue_depth("EventsQueue") == 0
    early = post(stack, body)  # a retry while the dead invocation's reservation is live: 503, never a 2xx
    assert early.status == 503 and early.json()["error"] == "in_progress"
    with after_invocation_deadline(FUNCTION):
        assert post(stack, body).json()["accepted"] == 1  # LiveKit's retry
    stack.drain()
    return 1


def crash_ingest_after_enqueue(stack: Any, db: Any) -> int:
    body = _body()
    kill_http(stack, "livekit.ingest.after_enqueue", FUNCTION, "POST", URL, body, headers(body))
    assert stack.queue_depth("EventsQueue") == 1
    with after_invocation_deadline(FUNCTION):
        post(stack, body)  # LiveKit's retry may enqueue it again: the claim must stop it
    stack.drain()
    return 1


def crash_worker_after_claim(stack: Any, db: Any) -> int:
    _short_lease(stack)
    assert post(stack, _body()).json()["accepted"] == 1
    kill_poll(stack, "livekit.worker.after_claim")
    assert db.execute("SELECT status::text FROM user_feedback").fetchone()[0] == "processing"
    _reclaim(stack)
    redrive(stack)  # SQS gives the dead worker's message back: a duplicate
    return 1


def crash_worker_after_llm(stack: Any, db: Any) -> int:
    _short_lease(stack)
    assert post(stack, _body()).json()["accepted"] == 1
    kill_poll(stack, "livekit.worker.after_llm")
    _reclaim(stack)
    redrive(stack)
    return 2  # the dead worker's answer died with it: the model is asked again, one result stored


def crash_worker_after_complete(stack: Any, db: Any) -> int:
    assert post(stack, _body()).json()["accepted"] == 1
    kill_poll(stack, "livekit.worker.after_complete")
    assert db.execute("SELECT status::text FROM user_feedback").fetchone()[0] == "completed"
    redrive(stack)
    return 1


def crash_reaper_after_reset(stack: Any, db: Any) -> int:
    _short_lease(stack)
    assert post(stack, _body()).json()["accepted"] == 1
    kill_poll(stack, "livekit.worker.after_claim")
    time.sleep(float(LEASE) + 0.3)
    env = {**crash_env(stack, "livekit.reaper.after_reset"), "LIVEKIT_REDRIVE_SECONDS": LEASE}
    expect_death(
        run_child("tests.proofs.test_crash_livekit:reap_step", (), env), "livekit.reaper.after_reset", "reaper"
    )
    assert db.execute("SELECT status::text FROM user_feedback").fetchone()[0] == "initiated"
    assert stack.queue_depth("EventsQueue") == 1  # only the dead worker's message, in flight: no re-drive
    time.sleep(float(LEASE) + 0.3)  # the reset row's re-drive time passes: the next tick re-drives it
    _reclaim_after_reset(stack)
    redrive(stack)
    return 1


def crash_reaper_after_late_mark(stack: Any, db: Any) -> int:
    """The row appears after room_finished; the late-row pass dies after marking it, before any re-drive."""
    saved = db.execute("DELETE FROM user_feedback RETURNING id, user_id, room_sid, room_name, transcript").fetchone()
    assert post(stack, _body()).json()["accepted"] == 1
    stack.drain()  # no row yet: no_feedback, the room remembered as finished
    db.execute(
        "INSERT INTO user_feedback (id, user_id, room_sid, room_name, transcript) VALUES (%s, %s, %s, %s, %s)", saved
    )
    env = {**crash_env(stack, "livekit.reaper.after_late_mark"), "LIVEKIT_REDRIVE_SECONDS": LEASE}
    expect_death(
        run_child("tests.proofs.test_crash_livekit:late_step", (), env), "livekit.reaper.after_late_mark", "reaper"
    )
    assert db.execute("SELECT lease_until IS NOT NULL FROM user_feedback").fetchone()[0]  # marked, not re-driven
    assert stack.queue_depth("EventsQueue") == 0
    time.sleep(float(LEASE) + 0.3)  # its re-drive time passes: the claim reaper's next tick re-drives it
    _reclaim_after_reset(stack)
    return 1


def _reclaim_after_reset(stack: Any) -> None:
    assert reap(stack) == 1
    stack.drain()


SCENARIOS: dict[str, Callable[[Any, Any], int]] = {
    "livekit.ingest.after_dedup": crash_ingest_after_dedup,
    "livekit.ingest.after_enqueue": crash_ingest_after_enqueue,
    "livekit.worker.after_claim": crash_worker_after_claim,
    "livekit.worker.after_llm": crash_worker_after_llm,
    "livekit.worker.after_complete": crash_worker_after_complete,
    "livekit.reaper.after_reset": crash_reaper_after_reset,
    "livekit.reaper.after_late_mark": crash_reaper_after_late_mark,
}


@pytest.mark.parametrize("boundary", sorted(SCENARIOS))
def test_sigkill_at_boundary_then_recovery_stores_one_analysis(stack, db, proof, boundary):
    # GIVEN a call's feedback row, WHEN a handler is SIGKILLed at the boundary and recovery runs
    fid = add_feedback(db)
    llm_calls = SCENARIOS[boundary](stack, db)
    # THEN the row is completed once, by the claim that holds it; nothing lost, quarantined or parked
    row = feedback_row(db, fid)
    assert row["status"] == "completed" and row["analysis"]["attempt"] == row["attempts"]
    assert stack.fakes.count("llm.chat", ROOM) == llm_calls
    quarantined = db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert quarantined == 0
    # one completed outcome in the event log (under the original event, or the reaper's re-drive of it),
    # and the original delivery settled either way
    outcomes = dict(db.execute("SELECT event_key, outcome FROM event_log").fetchall())
    completed = list(outcomes.values()).count("completed")
    assert completed == 1
    late = boundary == "livekit.reaper.after_late_mark"  # room_finished came before the row: nothing to claim then
    assert outcomes["livekit:EV_crash_proof"] in (("no_feedback",) if late else ("completed", "duplicate"))
    assert stack.queue_depth("EventsQueue") == 0 and dlq_depth(stack) == 0
    proof.record(
        kind="crash",
        flow=FLOW,
        name=boundary,
        cases=1,
        held=f"1 room_finished -> {completed} completed analysis ({row['attempts']} claims, {llm_calls} LLM calls); "
        f"{quarantined} quarantined, {1 - completed} lost",
    )
