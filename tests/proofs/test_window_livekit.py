"""LiveKit: the same room_finished webhook re-delivered over (and past) the 24-hour dedup window on a simulated
clock, each delivery signed at its own time with livekit-api -> one LLM analysis of the call."""

from __future__ import annotations

import time

import pytest
import time_machine

from tests import livekit_support as lk

pytestmark = pytest.mark.slow

WINDOW = 24 * 3600
ROOM, SID = "feedback-window-1", "RM_window1"


def test_room_finished_redelivered_over_and_past_the_window_is_analysed_once(stack, db, proof):
    fid = lk.add_feedback(db, SID, ROOM)
    base = time.time()
    fractions = (0.0, 0.01, 0.25, 0.5, 0.99, None)  # None: an hour past the window
    accepted = []
    for f in fractions:
        with time_machine.travel(base + (WINDOW + 3600 if f is None else f * WINDOW)):
            raw = lk.encode(lk.room_event(sid=SID, name=ROOM, event_id="EV_window_1"))
            answer = lk.post(stack, raw)  # a fresh token: LiveKit signs every delivery when it sends it
            assert answer.status == 200, answer.body
            accepted.append(int(answer.json()["accepted"]))
            stack.drain()
    assert accepted == [1, 0, 0, 0, 0, 1]
    assert lk.feedback_row(db, fid)["status"] == "completed"
    calls = stack.fakes.delivered("llm.chat", SID)  # the fake counts calls per room sid
    assert calls == stack.fakes.count("llm.chat", SID) == 1
    analyses = db.execute("SELECT count(*) FROM user_feedback WHERE status = 'completed'").fetchone()[0]
    proof.record(
        kind="window",
        flow="livekit",
        name=f"room_finished re-delivered over {(WINDOW + 3600) / 3600:g} h (simulated clock)",
        cases=len(accepted),
        held=f"{accepted[1:-1].count(0)} stopped at ingest, {accepted[-1]} past the window stopped by the claim, "
        f"{calls} LLM call, {analyses} analysis",
    )
