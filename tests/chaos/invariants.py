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
    if flow.effects:  # else the flow's own check counts its effects (the mailbox: mails, not triggers)
        _one_effect_per_event(stack, db, flow, eids, outcome, where)
    if flow.name == "whatsapp":
        replies = {eid: stack.fakes.delivered("whatsapp.send", f"{CUSTOMER}:{eid} is working") for eid in eids}
        sends_once(stack, db, outcome, replies, stack.fakes.delivered("whatsapp.send"), where)
    if flow.check and (counted := flow.check(stack, db, eids, where, outcome)) is not None:
        outcome.effects = counted
    for queue in ("EventsQueue", "SendQueue", *(q for _f, q in flow.pollers)):
        assert stack.queue_depth(queue) == 0, f"{queue} not empty {where}"
    assert dlq_depth(stack) == 0, f"messages parked in a DLQ {where}"
    # Every event here is readable: quarantine holds only the sends put to review (one row each, for the operator).
    # (and the feedback rows whose analysis spent its attempts, each quarantined once; a flow that feeds truly
    # unreadable input checks its own rows: ``own_quarantine``).
    parked = db.execute(
        "SELECT provider, reason FROM quarantine WHERE provider IS DISTINCT FROM %s", (flow.own_quarantine or None,)
    ).fetchall()
    failed = db.execute("SELECT count(*) FROM user_feedback WHERE status = 'failed'").fetchone()[0]
    expected = outcome.sends.get("review", 0) + failed
    assert len(parked) == expected, f"quarantined {parked}, sends {dict(outcome.sends)}, {failed} failed {where}"


def _one_effect_per_event(
    stack: Stack, db: Any, flow: ChaosFlow, eids: list[str], outcome: Outcome, where: str
) -> None:
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


def sends_once(stack: Stack, db: Any, outcome: Outcome, delivered: dict[str, int], total: int, where: str) -> None:
    """No message reached the provider twice; each send ended sent or review, a sent one delivered once; the
    provider got nothing but these sends."""
    assert max(delivered.values()) <= 1, f"a message sent twice: {delivered} {where}"
    statuses = dict(outcome.sends)
    assert set(statuses) <= {"sent", "review"}, f"sends left open: {statuses} {where}"
    assert sum(statuses.values()) == len(delivered), f"one send per event: {statuses} {where}"
    sent = sum(delivered.values())
    assert statuses.get("sent", 0) <= sent <= len(delivered), f"{statuses} vs {sent} delivered {where}"
    assert total == sent, f"{total} messages at the provider, {sent} of them ours {where}"
