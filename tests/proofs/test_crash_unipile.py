"""Unipile: SIGKILL at every boundary of ingest and worker, then retries and SQS redelivery -> one row per message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.generic_support import sample_body, unipile_headers
from tests.proofs.crash_support import after_invocation_deadline, dlq_depth, kill_http, kill_poll, redrive

pytestmark = pytest.mark.slow

FLOW = "unipile"
INGEST = "UnipileIngestFunction"
URL = "http://127.0.0.1:3000/webhooks/unipile"
# A prospect's message and the account's own answer: one chat, so one FIFO group, in this order.
MESSAGES = {
    "ykmhfXlRW0W_cqReJYrfBw": ("unipile_message_received.json", "inbound"),
    "Zq0selfSentMessage01": ("unipile_message_sent_by_account.json", "outbound"),
}


def _post(stack: Any, body: bytes) -> Any:
    return stack.invoke_http(INGEST, "POST", URL, body, unipile_headers())


def _bodies() -> list[bytes]:
    return [sample_body(name) for name, _ in MESSAGES.values()]


def _unipile_retries(stack: Any, body: bytes) -> None:
    """Unipile retries a delivery it got no 200 for; ingest takes it once the dead invocation's deadline passed."""
    early = _post(stack, body)
    # the dead invocation's reservation is live: a 503, so Unipile retries (a 200 would lose it)
    assert early.status == 503 and early.json()["error"] == "in_progress"
    with after_invocation_deadline(INGEST):
        late = _post(stack, body)
    assert late.status == 200


def crash_ingest_after_dedup(stack: Any, db: Any) -> None:
    first, second = _bodies()
    kill_http(stack, "unipile.ingest.after_dedup", INGEST, "POST", URL, first, unipile_headers())
    assert stack.queue_depth("EventsQueue") == 0  # died before SendMessageBatch
    _unipile_retries(stack, first)
    assert _post(stack, second).status == 200
    stack.drain()


def crash_ingest_after_enqueue(stack: Any, db: Any) -> None:
    first, second = _bodies()
    kill_http(stack, "unipile.ingest.after_enqueue", INGEST, "POST", URL, first, unipile_headers())
    assert stack.queue_depth("EventsQueue") == 1  # queued, but its reservation never completed
    _unipile_retries(stack, first)  # may enqueue it again: Postgres must stop it
    assert _post(stack, second).status == 200
    stack.drain()


def crash_worker_before_commit(stack: Any, db: Any) -> None:
    for body in _bodies():
        assert _post(stack, body).json()["accepted"] == 1
    kill_poll(stack, "unipile.worker.before_commit")
    assert db.execute("SELECT count(*) FROM linkedin_messages").fetchone()[0] == 0  # rolled back with the process
    redrive(stack)


def crash_worker_after_commit(stack: Any, db: Any) -> None:
    for body in _bodies():
        assert _post(stack, body).json()["accepted"] == 1
    kill_poll(stack, "unipile.worker.after_commit")
    assert db.execute("SELECT count(*) FROM linkedin_messages").fetchone()[0] == 1  # committed, never acked
    redrive(stack)


SCENARIOS: dict[str, Callable[[Any, Any], None]] = {
    "unipile.ingest.after_dedup": crash_ingest_after_dedup,
    "unipile.ingest.after_enqueue": crash_ingest_after_enqueue,
    "unipile.worker.before_commit": crash_worker_before_commit,
    "unipile.worker.after_commit": crash_worker_after_commit,
}


@pytest.mark.parametrize("boundary", sorted(SCENARIOS))
def test_sigkill_at_boundary_then_recovery_records_each_message_once(stack, db, proof, boundary):
    # GIVEN an inbound and a self-sent message, WHEN a handler is SIGKILLed at the boundary and recovery runs
    SCENARIOS[boundary](stack, db)
    # THEN each message has exactly one row, with its direction; nothing is lost, quarantined or parked
    rows = db.execute("SELECT message_id, direction, count(*) OVER (PARTITION BY message_id) FROM linkedin_messages")
    held = sorted(rows.fetchall())
    assert held == sorted((m, d, 1) for m, (_, d) in MESSAGES.items())
    quarantined = db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert quarantined == 0
    lost = len(set(MESSAGES) - {m for m, _, _ in held})
    assert stack.queue_depth("EventsQueue") == 0 and dlq_depth(stack) == 0
    proof.record(
        kind="crash",
        flow=FLOW,
        name=boundary,
        cases=len(MESSAGES),
        held=f"{len(MESSAGES)} Unipile messages -> {len(held)} linkedin_messages rows, 1 each, direction kept; "
        f"{lost} lost, {quarantined} quarantined",
    )
