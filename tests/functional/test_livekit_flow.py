"""LiveKit room_finished -> exactly one feedback analysis, end to end: the real handlers, serialised
moto, Postgres, and a fake OpenAI-compatible LLM over HTTP that counts calls."""

from __future__ import annotations

import json

import jwt
import pytest
from livekit import api

from devstack.fakes import Behaviour
from exactly_once.flows.livekit import feedback
from tests.livekit_support import (
    API_KEY,
    API_SECRET,
    add_feedback,
    encode,
    feedback_row,
    headers,
    post,
    reap,
    room_event,
    sign,
)

ROOM = "RM_ZbhL7XyXTZxz"


def test_signed_room_finished_is_analysed_once_and_its_redelivery_stopped(stack, db):
    # GIVEN an 'initiated' feedback row for the room
    fid = add_feedback(db)
    body = encode(room_event(event_id="EV_finish_1"))
    # the signature is LiveKit's own: its SDK's receiver accepts it
    api.WebhookReceiver(api.TokenVerifier(API_KEY, API_SECRET)).receive(body.decode(), sign(body))
    # WHEN LiveKit delivers room_finished, then re-delivers it
    first, again = post(stack, body), post(stack, body)
    stack.drain()
    # THEN ingest accepted one and stopped the re-delivery, answering 200 both times
    assert (first.status, first.json()["accepted"]) == (200, 1)
    assert (again.status, again.json()["duplicates"]) == (200, 1)
    # AND the LLM was called once for the room, and its answer stored under a completed claim
    assert stack.fakes.count("llm.chat", ROOM) == 1
    row = feedback_row(db, fid)
    assert (row["status"], row["attempts"], row["lease_until"]) == ("completed", 1, None)
    assert row["analysis"]["result"]["sentiment"] == "positive"
    assert row["analysis"]["model"] == "test-analysis-model"
    assert row["completed_at"] is not None
    assert db.execute("SELECT outcome, deliveries FROM event_log").fetchall() == [("completed", 1)]
    # AND the request carried an idempotency key derived from the claim
    assert stack.fakes.state["llm_idempotency_keys"] == [f"feedback-{fid}-{row['claim_token']}"]


def test_a_second_room_finished_past_ingest_is_stopped_by_the_postgres_claim(stack, db):
    # GIVEN the same room reported twice under different event ids (ingest cannot tell them apart)
    fid = add_feedback(db)
    assert post(stack, encode(room_event(event_id="EV_a"))).json()["accepted"] == 1
    assert post(stack, encode(room_event(event_id="EV_b"))).json()["accepted"] == 1
    stack.drain()
    # THEN one analysis; the second event met the claim and was acknowledged as a duplicate
    assert stack.fakes.count("llm.chat", ROOM) == 1
    assert feedback_row(db, fid)["status"] == "completed"
    outcomes = dict(db.execute("SELECT event_key, outcome FROM event_log").fetchall())
    assert sorted(outcomes.values()) == ["completed", "duplicate"]
    assert stack.queue_depth("EventsDeadLetterQueue") == 0


def test_llm_failing_twice_then_succeeding_completes_once_with_attempts_recorded(stack, db, monkeypatch):
    monkeypatch.setenv("LLM_RETRIES", "0")  # every failure is a worker attempt, not an HTTP retry
    fid = add_feedback(db)
    stack.fakes.behaviours["llm.chat"] = Behaviour(fail_times=2, fail_status=503)
    post(stack, encode(room_event()))
    stack.drain()
    row = feedback_row(db, fid)
    assert (row["status"], row["attempts"]) == ("completed", 3)
    assert "503" in row["last_error"]  # the last failure stays visible next to the result
    assert stack.fakes.count("llm.chat", ROOM) == 3
    assert db.execute("SELECT outcome FROM event_log").fetchall() == [("completed",)]
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
    # each attempt was a new claim, hence a new idempotency key
    assert len(set(stack.fakes.state["llm_idempotency_keys"])) == 3


def test_transient_llm_errors_are_absorbed_by_bounded_http_retries_under_one_key(stack, db):
    fid = add_feedback(db)
    stack.fakes.behaviours["llm.chat"] = Behaviour(fail_times=2, fail_status=502)
    post(stack, encode(room_event()))
    stack.drain()
    row = feedback_row(db, fid)
    assert (row["status"], row["attempts"]) == ("completed", 1)
    keys = stack.fakes.state["llm_idempotency_keys"]
    assert len(keys) == 3 and len(set(keys)) == 1


def test_llm_failing_every_attempt_ends_failed_with_a_quarantine_row(stack, db, monkeypatch):
    monkeypatch.setenv("LLM_RETRIES", "0")
    fid = add_feedback(db)
    stack.fakes.behaviours["llm.chat"] = Behaviour(fail_times=100, fail_status=500)
    post(stack, encode(room_event()))
    stack.drain()
    row = feedback_row(db, fid)
    assert (row["status"], row["attempts"], row["analysis"]) == ("failed", 3, None)
    assert stack.fakes.count("llm.chat", ROOM) == 3  # LIVEKIT_MAX_ATTEMPTS, then no more
    reason, external_id = db.execute("SELECT reason, external_id FROM quarantine").fetchone()
    assert "failed 3 times" in reason and external_id == ROOM
    assert db.execute("SELECT outcome FROM event_log").fetchall() == [("failed",)]
    assert stack.queue_depth("EventsQueue") == 0 and stack.queue_depth("EventsDeadLetterQueue") == 0


def test_stale_worker_late_completion_is_rejected_by_the_fence(stack, db, monkeypatch):
    # GIVEN worker A claimed the room with a lease that has run out (it hung)
    fid = add_feedback(db)
    conn = db
    stale = feedback.claim_room(conn, ROOM, None, lease=0).claims[0]
    # WHEN the reaper reclaims it and re-drives the room, and worker B completes it
    assert reap(stack) == 1
    assert feedback_row(db, fid)["status"] == "initiated"
    stack.drain()
    after_b = feedback_row(db, fid)
    assert (after_b["status"], after_b["attempts"]) == ("completed", 2)
    # THEN A's late completion and late failure both match nothing
    assert feedback.complete(conn, stale, {"result": {"summary": "stale"}}) is False
    assert feedback.release(conn, stale, "late error", feedback.FeedbackSettings.from_env()) is None
    assert feedback_row(db, fid) == after_b
    assert stack.fakes.count("llm.chat", ROOM) == 1


def test_reaper_leaves_live_claims_and_finished_rows_alone(stack, db):
    live = add_feedback(db, sid="RM_live", name="live")
    done = add_feedback(db, sid="RM_done", name="done")
    feedback.claim_room(db, "RM_live", None, lease=120)
    db.execute("UPDATE user_feedback SET status = 'completed' WHERE id = %s", (done,))
    assert reap(stack) == 0
    assert feedback_row(db, live)["status"] == "processing"
    assert stack.queue_depth("EventsQueue") == 0


def test_other_events_are_recorded_once_never_failed(stack, db):
    events = [room_event("participant_joined"), room_event("egress_ended"), room_event("agent_dispatched")]
    for event in events:
        assert post(stack, encode(event)).status == 200
    stack.drain()
    outcomes = sorted(r[0] for r in db.execute("SELECT outcome FROM event_log"))
    assert outcomes == ["recorded", "recorded", "recorded_unhandled"]
    assert stack.fakes.count("llm.chat") == 0
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0


def test_room_finished_without_feedback_row_is_recorded_not_retried(stack, db):
    post(stack, encode(room_event(sid="RM_nobody")))
    stack.drain()
    assert db.execute("SELECT outcome FROM event_log").fetchall() == [("no_feedback",)]
    assert stack.fakes.count("llm.chat") == 0
    assert stack.queue_depth("EventsDeadLetterQueue") == 0


def _alg_none(body: bytes) -> str:
    claims = jwt.decode(sign(body), options={"verify_signature": False})
    return jwt.encode(claims, key=None, algorithm="none")


BODY = encode(room_event(event_id="EV_auth"))
OTHER = encode(room_event(event_id="EV_other"))
BAD_AUTH = {
    "bad signature": {"authorization": sign(BODY, secret="not-the-livekit-secret-0123456789abcdef")},
    "tampered body": {"authorization": sign(OTHER)},
    "expired token": {"authorization": sign(BODY, ttl_seconds=-60)},
    "wrong issuer": {"authorization": sign(BODY, key="APIsomeoneelse")},
    "missing header": {},
    "alg none": {"authorization": _alg_none(BODY)},
    "garbage token": {"authorization": "not.a.jwt"},
}


@pytest.mark.parametrize("case", sorted(BAD_AUTH))
def test_unauthenticated_deliveries_get_401_and_nothing_is_enqueued(stack, db, case):
    answer = post(stack, BODY, {"content-type": "application/webhook+json", **BAD_AUTH[case]})
    assert answer.status == 401, answer.body
    assert stack.queue_depth("EventsQueue") == 0


def test_token_inside_the_leeway_is_accepted(stack, db):
    # exp 5 s ago, within the 10 s leeway (clock skew between LiveKit and Lambda)
    assert post(stack, BODY, headers(BODY, ttl_seconds=-5)).status == 200


def test_signed_malformed_json_gets_400_and_its_raw_body_is_quarantined(stack, db):
    raw = b'{"event": "room_finished", "id": "EV_broken", "room": {'
    answer = post(stack, raw)
    assert answer.status == 400 and answer.json()["error"] == "invalid_json"
    assert stack.queue_depth("EventsQueue") == 1  # enqueued before answering
    stack.drain()
    assert db.execute("SELECT provider, raw FROM quarantine").fetchall() == [("livekit", raw.decode())]
    assert stack.fakes.count("llm.chat") == 0


def test_signed_event_without_id_is_quarantined_and_acknowledged(stack, db):
    body = room_event()
    del body["id"]
    raw = encode(body)
    assert post(stack, raw).status == 200
    stack.drain()
    reason, stored = db.execute("SELECT reason, raw FROM quarantine").fetchone()
    assert "without id" in reason and json.loads(stored) == body


def test_plain_application_json_is_accepted_other_types_refused(stack, db):
    assert post(stack, BODY, {**headers(BODY), "content-type": "application/json"}).status == 200
    assert post(stack, OTHER, {**headers(OTHER), "content-type": "text/plain"}).status == 415


def test_the_sample_event_file_is_a_valid_signed_delivery_once_resigned(stack, db):
    from devstack.lambda_runtime import LambdaContext
    from devstack.sign_sample import resign
    from devstack.template import ROOT
    from tests.harness import TEST_SECRETS

    event = json.loads((ROOT / "events" / "livekit_room_finished.json").read_text())
    handler = stack.handler("LiveKitIngestFunction")
    # The committed token is long-lived: refused as an absurd lifetime, as a captured token would be
    result = handler(event, LambdaContext(function_name="LiveKitIngestFunction"))
    assert (result["statusCode"], json.loads(result["body"])["error"]) == (401, "token_lifetime")
    # Signed again for now (python -m devstack.sign_sample), the same body is a valid delivery
    result = handler(resign(event, TEST_SECRETS), LambdaContext(function_name="LiveKitIngestFunction"))
    assert result["statusCode"] == 200 and json.loads(result["body"])["accepted"] == 1
