"""Forwarding: SIGKILL between an event's settle and its forward's enqueue, and between the enqueue and the relay;
then SQS redelivers and the reapers run -> every settled event reaches the receiver exactly once.

The forward is queued after the event's own transaction, not inside it (sends/forward.py): a worker killed in
between never deleted the queue message, so its re-delivery is settled as a duplicate and queues the forward
then. These scenarios prove that argument; the send worker's own boundaries are those of test_crash_send.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.forward_support import KIND, deliver, enable, forwards
from tests.proofs.crash_support import dlq_depth, kill_poll, redrive
from tests.send_support import reap

pytestmark = pytest.mark.slow

FLOW = "forward"
EVENTS = 2


def _deliver_events(stack: Any) -> list[str]:
    return [deliver(stack, f"fwd-crash-{uuid.uuid4().hex[:8]}") for _ in range(EVENTS)]


def _recover(stack: Any) -> None:
    """What production runs on its own: SQS redelivery, the reapers every minute, the send worker."""
    for _ in range(3):
        redrive(stack)
        reap()
        stack.drain("SendWorkerFunction", "SendQueue")
        if stack.queue_depth("EventsQueue") == 0 and stack.queue_depth("SendQueue") == 0:
            return


def crash_after_settle(stack: Any, db: Any) -> dict[str, int]:
    keys = _deliver_events(stack)
    kill_poll(stack, "forward.after_settle")
    # the event is settled (its effect committed), its forward not queued, its message never deleted
    assert db.execute("SELECT count(*) FROM event_log").fetchone()[0] >= 1 and forwards(db) == []
    _recover(stack)
    return {"events": len(keys)}


def crash_after_enqueue(stack: Any, db: Any) -> dict[str, int]:
    keys = _deliver_events(stack)
    kill_poll(stack, "forward.after_enqueue")
    # the forward is queued with its outbox record, never relayed: the re-delivery finds it queued,
    # and the outbox sweeper relays it
    (row,) = forwards(db)
    assert row["status"] == "pending" and stack.queue_depth("SendQueue") == 0
    _recover(stack)
    return {"events": len(keys)}


SCENARIOS: dict[str, Callable[[Any, Any], dict[str, int]]] = {
    "forward.after_settle": crash_after_settle,
    "forward.after_enqueue": crash_after_enqueue,
}


@pytest.mark.parametrize("boundary", sorted(SCENARIOS))
def test_sigkill_between_settle_and_forward_then_recovery_forwards_each_event_once(
    stack, db, proof, monkeypatch, boundary
):
    enable(stack, monkeypatch)
    monkeypatch.setenv("SEND_RELAY_GRACE_SECONDS", "0")
    SCENARIOS[boundary](stack, db)
    # THEN each settled event reached the receiver once, under its own key, and every forward is sent
    settled = [r[0] for r in db.execute("SELECT event_key FROM event_log ORDER BY event_key").fetchall()]
    per_id = {e["key"]: e["count"] for e in stack.fakes.effects() if e["kind"] == KIND}
    assert len(settled) == EVENTS and sorted(per_id) == settled and set(per_id.values()) == {1}, per_id
    rows = forwards(db)
    assert len(rows) == EVENTS and {r["status"] for r in rows} == {"sent"}
    assert stack.queue_depth("EventsQueue") == 0 and stack.queue_depth("SendQueue") == 0 and dlq_depth(stack) == 0
    resent, lost = sum(n - 1 for n in per_id.values()), EVENTS - len(per_id)
    proof.record(
        kind="crash",
        flow=FLOW,
        name=boundary,
        cases=EVENTS,
        held=f"{len(per_id)}/{EVENTS} settled events forwarded exactly once (counted at the fake receiver, "
        f"each signature verified); {resent} resent, {lost} lost",
    )
