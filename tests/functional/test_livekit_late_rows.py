"""LiveKit: a feedback row the app creates after its room finished is analysed once (the reaper's late-row pass
re-drives it through the claim), and the LLM's calls and tokens are counted. Real handlers, Postgres, moto,
the fake OpenAI-compatible LLM."""

from __future__ import annotations

from typing import Any

import psycopg

from devstack.lambda_runtime import LambdaContext
from exactly_once.core.telemetry import Metric
from exactly_once.flows.livekit import feedback
from exactly_once.flows.livekit.feedback import FeedbackSettings
from tests import emf
from tests.livekit_support import add_feedback, encode, feedback_row, post, room_event

ROOM = "RM_late_room"
NAME = "late-call"


def run_reapers(stack: Any) -> dict[str, int]:
    return stack.handler("ClaimReaperFunction")({}, LambdaContext("ClaimReaperFunction", timeout_s=60))


def finish_room(stack: Any, event_id: str) -> None:
    assert post(stack, encode(room_event(sid=ROOM, name=NAME, event_id=event_id))).json()["accepted"] == 1
    stack.drain()


def test_row_created_after_room_finished_is_analysed_once_by_the_reaper(stack, db, capsys):
    # GIVEN LiveKit reported the room finished before the app wrote its feedback row
    capsys.readouterr()
    finish_room(stack, "EV_late_1")
    assert db.execute("SELECT outcome FROM event_log").fetchall() == [("no_feedback",)]
    assert db.execute("SELECT room_sid, room_name FROM livekit_rooms_finished").fetchall() == [(ROOM, NAME)]
    # WHEN the app writes the row, and the scheduled reaper runs twice around the worker
    fid = add_feedback(db, sid=ROOM, name=NAME)
    first = run_reapers(stack)
    stack.drain()
    second = run_reapers(stack)
    stack.drain()
    # THEN the row was re-driven once and analysed once
    assert (first["livekit_late_feedback"], second["livekit_late_feedback"]) == (1, 0)
    row = feedback_row(db, fid)
    assert (row["status"], row["attempts"]) == ("completed", 1)
    assert stack.fakes.count("llm.chat", ROOM) == 1
    outcomes = dict(db.execute("SELECT event_key, outcome FROM event_log").fetchall())
    assert outcomes == {"livekit:EV_late_1": "no_feedback", f"livekit:redrive:{fid}:0": "completed"}
    # AND the late row, the model's call and its tokens are counted; nothing is late any more
    metrics = emf.emitted(capsys)
    assert metrics[("livekit", Metric.LATE_FEEDBACK_REDRIVEN)] == 1
    assert metrics[("livekit", Metric.LLM_CALLS)] == 1
    assert (metrics[("livekit", Metric.LLM_TOKENS_IN)], metrics[("livekit", Metric.LLM_TOKENS_OUT)]) == (100, 20)
    assert metrics[("livekit", Metric.LLM_CALLS_PER_ROOM)] == 1
    assert metrics[("livekit", Metric.LATE_FEEDBACK_ROWS)] == 0
    # AND a re-delivered room_finished meets the completed row: a duplicate, no second call
    finish_room(stack, "EV_late_2")
    assert stack.fakes.count("llm.chat", ROOM) == 1


def test_row_committed_while_the_worker_claims_is_not_lost(stack, db, database_url):
    # GIVEN the app's insert of the row is in flight (uncommitted) while room_finished is handled
    with psycopg.connect(database_url) as app:
        fid = str(
            app.execute(
                "INSERT INTO user_feedback (user_id, room_sid, room_name, transcript)"
                " VALUES ('u', %s, %s, 'agent: hi') RETURNING id",
                (ROOM, NAME),
            ).fetchone()[0]
        )
        finish_room(stack, "EV_race")
        assert db.execute("SELECT outcome FROM event_log").fetchall() == [("no_feedback",)]
        app.commit()
    # WHEN the reaper runs after the row committed
    assert run_reapers(stack)["livekit_late_feedback"] == 1
    stack.drain()
    # THEN it is analysed once
    assert feedback_row(db, fid)["status"] == "completed"
    assert stack.fakes.count("llm.chat", ROOM) == 1


def test_two_reapers_racing_mark_a_late_row_once(db, database_url, stack):
    # GIVEN a finished room and its late row, and two reaper passes in flight at once
    finish_room(stack, "EV_two")
    add_feedback(db, sid=ROOM, name=NAME)
    settings = FeedbackSettings.from_env()
    with psycopg.connect(database_url) as one, psycopg.connect(database_url) as two:
        taken = feedback.late_rows(one, settings)  # holds the row's lock until it commits
        skipped = feedback.late_rows(two, settings)  # SKIP LOCKED: not waiting, not taking
        one.commit()
        two.commit()
        after = feedback.late_rows(two, settings)  # the row now carries its re-drive time
    # THEN exactly one pass took it
    assert (len(taken), len(skipped), len(after)) == (1, 0, 0)


def test_row_of_a_room_finished_too_long_ago_is_left_and_shown_by_the_gauge(stack, db, capsys):
    # GIVEN a room finished 8 days ago (past the 7-day horizon) and a row for it written now
    finish_room(stack, "EV_old")
    db.execute("UPDATE livekit_rooms_finished SET finished_at = now() - interval '8 days'")
    fid = add_feedback(db, sid=ROOM, name=NAME)
    capsys.readouterr()
    # WHEN the reaper runs
    assert run_reapers(stack)["livekit_late_feedback"] == 0
    # THEN it is not analysed, and the gauge the alarm watches counts it
    assert feedback_row(db, fid)["status"] == "initiated"
    assert stack.fakes.count("llm.chat") == 0
    assert emf.emitted(capsys)[("livekit", Metric.LATE_FEEDBACK_ROWS)] == 1
