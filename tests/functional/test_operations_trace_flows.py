"""`exactly-once trace` on the other flows: the effect rows, claims and attempts each flow keeps."""

from __future__ import annotations

import json

from exactly_once.ops import cli
from tests import generic_support, livekit_support, whatsapp_support


def trace(capsys, key: str):
    capsys.readouterr()
    assert cli.main(["trace", key, "--no-aws"]) == 0
    return json.loads(capsys.readouterr().out)


def test_trace_of_a_livekit_room_finished_shows_the_feedback_claim_and_its_attempts(stack, db, capsys):
    fid = livekit_support.add_feedback(db)
    body = livekit_support.encode(livekit_support.room_event(event_id="EV_finish_1"))
    livekit_support.post(stack, body)
    stack.drain()
    traced = trace(capsys, "livekit:EV_finish_1")
    assert traced["events"][0]["outcome"] == "completed"
    (effect,) = traced["effects"]
    assert (effect["effect"], str(effect["id"]), effect["status"], effect["attempts"]) == (
        "feedback",
        fid,
        "completed",
        1,
    )
    assert effect["claimed"] is True  # the completed claim keeps its token: the fence of the last worker
    assert "ingest" not in traced  # --no-aws


def test_trace_of_a_whatsapp_message_shows_the_stored_message_and_its_reply(stack, db, capsys):
    whatsapp_support.post(stack, whatsapp_support.one_text("wamid.T1", "test"))
    whatsapp_support.post(stack, whatsapp_support.one_text("wamid.T1", "test"))
    stack.drain()
    traced = trace(capsys, "whatsapp:msg:wamid.T1")
    assert traced["events"][0]["outcome"] == "replied"
    kinds = {e["effect"]: e for e in traced["effects"]}
    assert kinds["whatsapp_message"]["wamid"] == "wamid.T1"
    assert kinds["send"]["idempotency_key"] == "reply:wamid.T1"
    assert "text" not in kinds["whatsapp_message"]  # trace shows ids and states, not message bodies


def test_a_send_in_review_is_traced_and_never_replayed_blindly(stack, db, capsys):
    # GIVEN a send whose outcome nobody can tell, kept in review with a quarantine row (as send_delivery does)
    from exactly_once.sends import queue as send_queue
    from exactly_once.sends.request import SendRequest

    with db.transaction():
        queued = send_queue.enqueue(
            db, SendRequest("reply:wamid.R1", "whatsapp", "PHONE1", "15550001111", {"text": "hi"})
        )
    db.execute(
        "UPDATE send_queue SET status = 'review', attempts = 1, last_error = 'timeout' WHERE id = %s", (queued.id,)
    )
    qid = db.execute(
        "INSERT INTO quarantine (provider, event_key, external_id, reason, raw)"
        " VALUES ('whatsapp', %s, %s, 'outcome unknown', '{}') RETURNING id",
        (f"send:{queued.id}", str(queued.id)),
    ).fetchone()[0]
    # WHEN the operator traces it
    traced = trace(capsys, f"send:{queued.id}")
    # THEN the row, its attempts and the outbox relay records are there, and the quarantine row
    effects = {e["effect"]: e for e in traced["effects"]}
    assert (effects["send"]["status"], effects["send"]["attempts"], effects["send"]["last_error"]) == (
        "review",
        1,
        "timeout",
    )
    assert effects["outbox"]["relay_records"] >= 1
    assert [q["id"] for q in traced["quarantine"]] == [qid]
    # AND replay refuses it: a person decides whether it went
    capsys.readouterr()
    assert cli.main(["quarantine", "replay", str(qid)]) == 2
    assert "no queued event" in capsys.readouterr().err
    # AND closing only the quarantine row is refused too: it would leave the send in review
    assert cli.main(["quarantine", "resolve", str(qid), "--note", "x"]) == 2
    assert f"send resolve {queued.id}" in capsys.readouterr().err
    # WHEN the operator found it was never delivered and resends it
    assert cli.main(["send", "resolve", str(queued.id), "resend", "--note", "not in the chat", "--by", "ops@t"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "pending"
    # THEN the send is pending again and its quarantine row resolved, with who and why
    assert db.execute("SELECT status::text FROM send_queue WHERE id = %s", (queued.id,)).fetchone() == ("pending",)
    assert db.execute("SELECT status, handled_by, note FROM quarantine WHERE id = %s", (qid,)).fetchone() == (
        "resolved",
        "ops@t",
        "not in the chat",
    )
    # AND a second decision finds nothing in review
    assert cli.main(["send", "resolve", str(queued.id), "drop", "--note", "late"]) == 2


def test_trace_of_an_unipile_message_shows_the_linkedin_row(stack, db, capsys):
    body = generic_support.sample_body("unipile_message_received.json")
    answer = stack.invoke_http(
        "UnipileIngestFunction",
        "POST",
        "http://127.0.0.1:3000/webhooks/unipile",
        body,
        generic_support.unipile_headers(),
    )
    assert answer.json()["accepted"] == 1
    stack.drain()
    (key,) = db.execute("SELECT event_key FROM event_log").fetchone()
    traced = trace(capsys, key)
    (effect,) = traced["effects"]
    assert (effect["effect"], effect["direction"], effect["event_key"]) == ("linkedin_message", "inbound", key)
    assert "body" not in effect


def test_trace_of_a_mailbox_job_shows_its_claim_and_attempts(stack, db, capsys):
    db.execute(
        "INSERT INTO mailbox_configs (user_id, imap_host, imap_username, password_secret)"
        " VALUES ('u1', 'imap.example.com', 'u1', 'U1_IMAP_PASSWORD')"
    )
    db.execute(
        "INSERT INTO mailbox_jobs (job_id, user_id, slot, origin, status, claim_token, lease_until, attempts)"
        " VALUES ('mbx-u1-20261122T080000Z', 'u1', now(), 'trigger', 'running', gen_random_uuid(),"
        "         now() + interval '5 minutes', 2)"
    )
    traced = trace(capsys, "mbx-u1-20261122T080000Z")
    (job,) = traced["effects"]
    assert (job["effect"], job["status"], job["attempts"], job["claimed"]) == ("mailbox_job", "running", 2, True)
