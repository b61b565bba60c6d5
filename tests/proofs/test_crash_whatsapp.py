"""WhatsApp: SIGKILL at every boundary of ingest, the message worker (responder, commit, reply relay) and the
status worker; then Meta retries, SQS redelivers and the outbox sweeper runs -> each message stored once, each
customer gets exactly one reply (counted at the fake WhatsApp Cloud API), each status applied once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.proofs.children import reap
from tests.proofs.crash_support import after_invocation_deadline, dlq_depth, kill_http, kill_poll, redrive
from tests.whatsapp_support import (
    CUSTOMER,
    FUNCTION,
    URL,
    change,
    entry,
    envelope,
    headers_for,
    meta_bytes,
    post,
    status,
    text_message,
)

pytestmark = pytest.mark.slow

FLOW = "whatsapp"
WORDS = ("hello", "price?")  # one delivery, two messages: a crash must lose neither


def _messages(tag: str) -> bytes:
    return meta_bytes(
        envelope(entry(change(messages=[text_message(f"wamid.{tag}{i}", w) for i, w in enumerate(WORDS)])))
    )


def _statuses(tag: str) -> bytes:
    return meta_bytes(
        envelope(entry(change(statuses=[status(f"wamid.{tag}{i}", "delivered") for i in range(len(WORDS))])))
    )


def _settle(stack: Any, db: Any) -> None:
    """Production's own recovery: SQS redelivery, the send queue's outbox sweeper, the send worker."""
    for _ in range(3):
        redrive(stack)
        reap(["send_outbox"])
        redrive(stack, "SendWorkerFunction", "SendQueue")
        open_sends = db.execute("SELECT count(*) FROM send_queue WHERE status <> 'sent'").fetchone()[0]
        if not open_sends and stack.queue_depth("EventsQueue") == 0 and stack.queue_depth("SendQueue") == 0:
            return


def _kill_ingest(stack: Any, db: Any, boundary: str, tag: str) -> None:
    raw = _messages(tag)
    kill_http(stack, boundary, FUNCTION, "POST", URL, raw, headers_for(raw))
    early = post(stack, raw)  # Meta retries at once: the dead invocation's reservations are live
    assert early.status == 503 and early.json()["error"] == "in_progress"  # not 200: Meta would stop retrying
    with after_invocation_deadline(FUNCTION):
        assert post(stack, raw).status == 200  # and again after the dead invocation's deadline
    _settle(stack, db)


def crash_ingest_after_dedup(stack: Any, db: Any) -> str:
    _kill_ingest(stack, db, "whatsapp.ingest.after_dedup", "D")
    return "D"


def crash_ingest_after_enqueue(stack: Any, db: Any) -> str:
    _kill_ingest(stack, db, "whatsapp.ingest.after_enqueue", "E")
    return "E"


def _kill_worker(stack: Any, db: Any, boundary: str, tag: str) -> str:
    assert post(stack, _messages(tag)).status == 200
    kill_poll(stack, boundary)
    _settle(stack, db)
    return tag


def crash_worker_after_responder(stack: Any, db: Any) -> str:
    return _kill_worker(stack, db, "whatsapp.worker.after_responder", "R")


def crash_worker_before_commit(stack: Any, db: Any) -> str:
    return _kill_worker(stack, db, "whatsapp.worker.before_commit", "B")


def crash_worker_after_commit(stack: Any, db: Any) -> str:
    return _kill_worker(stack, db, "whatsapp.worker.after_commit", "C")


def crash_worker_after_relay(stack: Any, db: Any) -> str:
    return _kill_worker(stack, db, "whatsapp.worker.after_relay", "L")


def crash_status_after_commit(stack: Any, db: Any) -> str:
    assert post(stack, _messages("S")).status == 200
    _settle(stack, db)
    assert post(stack, _statuses("S")).status == 200
    kill_poll(stack, "whatsapp.status.after_commit")
    _settle(stack, db)
    applied = dict(db.execute("SELECT provider_message_id, status FROM message_delivery").fetchall())
    assert applied == {f"wamid.S{i}": "delivered" for i in range(len(WORDS))}
    return "S"


def crash_field_after_record(stack: Any, db: Any) -> str:
    """A template status update rides in the same POST as the messages; the worker dies after recording it."""
    update = {"event": "APPROVED", "message_template_id": 1234, "message_template_name": "welcome", "reason": "NONE"}
    body = envelope(entry(change(messages=[text_message(f"wamid.F{i}", w) for i, w in enumerate(WORDS)])))
    body["entry"][0]["changes"].append({"field": "message_template_status_update", "value": update})
    assert post(stack, meta_bytes(body)).status == 200
    kill_poll(stack, "whatsapp.field.after_record")
    _settle(stack, db)
    recorded = db.execute("SELECT kind, outcome, deliveries FROM event_log WHERE kind LIKE 'field:%'").fetchall()
    assert [(kind, outcome) for kind, outcome, _ in recorded] == [("field:message_template_status_update", "recorded")]
    return "F"


SCENARIOS: dict[str, Callable[[Any, Any], str]] = {
    "whatsapp.ingest.after_dedup": crash_ingest_after_dedup,
    "whatsapp.ingest.after_enqueue": crash_ingest_after_enqueue,
    "whatsapp.worker.after_responder": crash_worker_after_responder,
    "whatsapp.worker.before_commit": crash_worker_before_commit,
    "whatsapp.worker.after_commit": crash_worker_after_commit,
    "whatsapp.worker.after_relay": crash_worker_after_relay,
    "whatsapp.status.after_commit": crash_status_after_commit,
    "whatsapp.field.after_record": crash_field_after_record,
}


@pytest.mark.parametrize("boundary", sorted(SCENARIOS))
def test_sigkill_at_boundary_then_recovery_stores_and_replies_once(stack, db, proof, monkeypatch, boundary):
    monkeypatch.setenv("SEND_RELAY_GRACE_SECONDS", "0")
    tag = SCENARIOS[boundary](stack, db)
    # THEN each message is stored once and its customer got exactly one reply
    stored = dict(db.execute("SELECT wamid, count(*) FROM whatsapp_messages GROUP BY 1").fetchall())
    assert stored == {f"wamid.{tag}{i}": 1 for i in range(len(WORDS))}
    replies = {w: stack.fakes.delivered("whatsapp.send", f"{CUSTOMER}:{w} is working") for w in WORDS}
    assert replies == dict.fromkeys(WORDS, 1), [(c.key, c.refused, c.failed) for c in stack.fakes.calls]
    assert stack.fakes.count("whatsapp.send") == stack.fakes.delivered("whatsapp.send") == len(WORDS)
    assert dict(db.execute("SELECT status::text, count(*) FROM send_queue GROUP BY 1").fetchall()) == {
        "sent": len(WORDS)
    }
    quarantined = db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert quarantined == 0
    assert stack.queue_depth("EventsQueue") == 0 and dlq_depth(stack) == 0
    proof.record(
        kind="crash",
        flow=FLOW,
        name=boundary,
        cases=len(WORDS),
        held=f"{len(stored)}/{len(WORDS)} messages stored once, {max(replies.values())} reply each at the fake "
        f"WhatsApp; {len(WORDS) - len(stored)} lost, {quarantined} quarantined",
    )
