"""Forwarding: SIGKILL between an event's settle and its forward's enqueue, and between the enqueue and the relay;
then SQS redelivers and the reapers run -> every settled event reaches the receiver exactly once.

The forward is queued after the event's own transaction, not inside it (sends/forward.py): a worker killed in
between never deleted the queue message, so its re-delivery is settled as a duplicate and queues the forward
then. These scenarios prove that argument; the send worker's own boundaries are those of test_crash_send.
"""

from __future__ import annotations

import time
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
        redrive(stack, "SendWorkerFunction", "SendQueue")
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


def test_a_forward_killed_after_the_receiver_took_it_is_sent_again_with_the_same_webhook_id(
    stack, db, proof, monkeypatch
):
    """The send worker's own boundary, for this channel: at_least_once, so an unknown outcome is sent again
    (never held for review), under the same webhook-id, which the receiver dedups on."""
    enable(stack, monkeypatch)
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    _deliver_events(stack)
    stack.drain()  # settled, the forwards queued and relayed
    kill_poll(
        stack, "send.worker.after_provider", "SendWorkerFunction", "SendQueue", extra_env={"SEND_LEASE_SECONDS": "1"}
    )
    time.sleep(1.2)  # the lease is Postgres time: let it lapse for real
    assert reap(["send_leases"]) == {"send_leases": 1}  # -> unknown, never pending
    _recover(stack)
    # THEN every event's forward is sent, none reviewed; the receiver took the killed one twice, one webhook-id
    rows = forwards(db)
    assert {r["status"] for r in rows} == {"sent"} and len(rows) == EVENTS
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
    per_id = {e["key"]: e["count"] for e in stack.fakes.effects() if e["kind"] == KIND}
    assert sorted(per_id) == sorted(r[0] for r in db.execute("SELECT event_key FROM event_log").fetchall())
    assert sorted(per_id.values()) == [1, 2], per_id
    assert dlq_depth(stack) == 0
    proof.record(
        kind="crash",
        flow=FLOW,
        name="send.worker.after_provider (channel forward)",
        cases=EVENTS,
        held=f"{len(rows)}/{EVENTS} forwards sent, 0 reviewed; the one killed after the receiver took it was sent "
        f"again under the same webhook-id ({max(per_id.values())} deliveries of one id, for the receiver to dedup)",
    )
