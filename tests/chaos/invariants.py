"""What must hold after a chaos storm and its recovery, read from Postgres and the fakes' records."""

from __future__ import annotations

from typing import Any

from tests.chaos.storm import ChaosFlow, Outcome
from tests.harness import Stack
from tests.proofs.crash_support import dlq_depth
from tests.whatsapp_support import CUSTOMER


def check(stack: Stack, db: Any, flow: ChaosFlow, eids: list[str], outcome: Outcome) -> None:
    """Every event (each was answered 2xx in the end) has exactly one effect; none without an event; sends
    at most once per key, and a send that could not be proven ends in review, never sent twice."""
    where = f"[{outcome.summary()}] replay with CHAOS_SEED={outcome.seed}"
    per_event = {eid: int(db.execute(flow.effects, {"id": eid}).fetchone()[0]) for eid in eids}
    doubled = {e: n for e, n in per_event.items() if n > 1}
    lost = sorted(e for e, n in per_event.items() if n == 0)
    if doubled or lost:
        queued = {q: stack.queue_depth(q) for q in ("EventsQueue", "SendQueue")}
        log = db.execute("SELECT event_key, outcome, deliveries FROM event_log ORDER BY 1").fetchall()
        parked = db.execute("SELECT reason FROM quarantine").fetchall()
        state = f"queued {queued}, DLQ {dlq_depth(stack)}, quarantine {parked}, event_log {log}"
        raise AssertionError(f"{flow.name}: doubled {doubled}, lost {lost}; {state} {where}")
    total = int(db.execute(flow.all_effects).fetchone()[0])
    assert total == len(eids), f"{flow.name}: {total} effects for {len(eids)} events {where}"
    outcome.effects = total
    if flow.name == "whatsapp":
        replies = {eid: stack.fakes.delivered("whatsapp.send", f"{CUSTOMER}:{eid} is working") for eid in eids}
        assert max(replies.values()) <= 1, f"a reply sent twice: {replies} {where}"
        statuses = dict(outcome.sends)
        assert set(statuses) <= {"sent", "review"}, f"sends left open: {statuses} {where}"
        assert sum(statuses.values()) == len(eids), f"one send per message: {statuses} {where}"
        sent = sum(replies.values())
        assert statuses.get("sent", 0) <= sent <= len(eids), f"{statuses} vs {sent} delivered {where}"
        assert stack.fakes.delivered("whatsapp.send") == sent  # no reply to anything but these events
    assert stack.queue_depth("EventsQueue") == 0 and stack.queue_depth("SendQueue") == 0, where
    assert dlq_depth(stack) == 0, f"messages parked in a DLQ {where}"
    # Every event here is readable: quarantine holds only the sends put to review (one row each, for the operator).
    parked = db.execute("SELECT provider, reason FROM quarantine").fetchall()
    assert len(parked) == outcome.sends.get("review", 0), f"quarantined {parked}, sends {dict(outcome.sends)} {where}"
