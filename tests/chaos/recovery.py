"""A chaos storm's recovery, production's own once the faults stop: the provider re-delivers every event it never
got a final answer for (past the dead invocations' deadlines), SQS redelivers, the reapers run, the send worker
drains, the flow's own step runs (the mailbox: the scheduler's next tick), until nothing is open."""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.chaos.sandbox import HOST, LEASE_SECONDS, RETRYABLE, accepted_of
from tests.harness import Stack
from tests.proofs.children import reap
from tests.proofs.crash_support import after_invocation_deadline, redrive

if TYPE_CHECKING:
    from tests.chaos.storm import ChaosFlow, Outcome


def recover(
    stack: Stack,
    db: Any,
    flow: ChaosFlow,
    deliveries: dict[str, tuple[bytes, dict[str, str]]],
    answers: Path,
    outcome: Outcome,
) -> None:
    """The provider re-delivers every event it never got a 2xx for; SQS redelivers; reapers; send worker."""
    got_2xx: set[str] = set()
    settled = 0  # final refusals of a duplicate (the mailbox's 409: the store holds the user's one pending job)
    if answers.exists():
        for line in answers.read_text().splitlines():
            with contextlib.suppress(ValueError):
                _idx, eid, status, accepted, _final, seconds = json.loads(line)
                outcome.deliveries += 1
                outcome.storm_deliveries += 1
                outcome.ack_seconds.append(seconds)
                if 200 <= status < 300:
                    outcome.answered_2xx += 1
                    got_2xx.add(eid)
                    outcome.stopped_ingest += accepted == 0
                    if isinstance(accepted, str):
                        outcome.accepted_ids.append(accepted)
                elif status in flow.settled:
                    got_2xx.add(eid)
                    settled += 1
                elif status in RETRYABLE:
                    outcome.refused += 1
    for eid in deliveries:
        for _ in range(5):
            if eid in got_2xx:
                break
            outcome.refused += 1
            with after_invocation_deadline(flow.function):  # the dead or refused invocation's reservation lapsed
                raw, headers = flow.deliver(eid)  # re-signed now, as the provider does
                url = f"{HOST}{flow.path}".replace("{id}", eid)
                answer = stack.invoke_http(flow.function, "POST", url, raw, headers)
            outcome.deliveries += 1
            if 200 <= answer.status < 300 or answer.status in flow.settled:
                got_2xx.add(eid)
                settled += answer.status in flow.settled
            if 200 <= answer.status < 300 and isinstance(made := accepted_of(answer.body.decode()), str):
                outcome.accepted_ids.append(made)
    assert got_2xx == set(deliveries), f"never accepted after the faults stopped: {set(deliveries) - got_2xx}"
    for round_ in range(10):
        if round_ >= 2:
            # The faults are over: a send the storm deferred (Retry-After, a backoff) is due now rather than
            # after its wait, as if the clock had moved on (its outbox record comes due with it).
            db.execute("UPDATE send_queue SET scheduled_for = now() WHERE status = 'pending' AND scheduled_for > now()")
            # and so is a sender a rate limit paused (a WhatsApp 429 without Retry-After pauses it 60 s)
            db.execute("UPDATE sender_pacing SET paused_until = NULL WHERE paused_until > now()")
            db.execute(
                "UPDATE send_outbox SET available_at = least(available_at, now()),"
                " created_at = least(created_at, now() - interval '1 hour') WHERE relayed_at IS NULL"
            )  # and past the sweeper's grace (it leaves a record that young to the after-commit relay)
        redrive(stack)
        outcome.dlq_replayed += _replay_dead_letters(stack, db)
        reap()  # leases lapsed -> unknown; unknown -> reconciled (sent, pending or review); outbox swept
        redrive(stack, "SendWorkerFunction", "SendQueue")
        if flow.recover:
            outcome.dlq_replayed += flow.recover(stack, db, round_)
        open_sends = db.execute(
            "SELECT count(*) FROM send_queue WHERE status NOT IN ('sent', 'review', 'failed')"
        ).fetchone()[0]
        if flow.open_work:
            open_sends += db.execute(flow.open_work).fetchone()[0]
        if not open_sends and not stack.queue_depth("EventsQueue") and not stack.queue_depth("SendQueue"):
            break
        time.sleep(LEASE_SECONDS + 0.2)  # leases are Postgres time: let a dead worker's lapse
    if flow.provider:
        row = db.execute(
            "SELECT coalesce(sum(deliveries) - count(*), 0) FROM event_log WHERE provider = %s", (flow.provider,)
        ).fetchone()
        outcome.stopped_postgres = int(row[0])
    outcome.stopped_postgres += settled
    outcome.sends = Counter(dict(db.execute("SELECT status::text, count(*) FROM send_queue GROUP BY 1").fetchall()))


def _replay_dead_letters(stack: Stack, db: Any) -> int:
    """An event whose five receives all met a fault is parked in the events DLQ (the alarm pages): the operator
    replays it (``exactly-once dlq replay``, the same library function), and the effect's guarantees settle it."""
    if not stack.queue_depth("EventsDeadLetterQueue"):
        return 0
    from devstack.aws_local import boto_client
    from exactly_once.ops.quarantine import replay_dead_letters

    sqs = boto_client("sqs", stack.aws.endpoint)
    physical = stack.aws.physical
    replayed = replay_dead_letters(
        db, sqs, physical["EventsDeadLetterQueue"], physical["EventsQueue"], by="chaos-recovery", limit=50
    )
    redrive(stack)
    return len(replayed)
