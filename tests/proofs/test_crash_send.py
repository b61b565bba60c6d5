"""Send queue: SIGKILL at every boundary of the outbox relay, the send worker and the reconciler; then leases
lapse, reapers run and SQS redelivers -> every queued message reaches the recipient exactly once. A send whose
outcome is unknown (killed after the provider accepted it) goes to ``unknown`` and is reconciled from the
provider's own list of sent messages, never resent."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.proofs.children import reap
from tests.proofs.crash_support import dlq_depth, kill_call, kill_http, kill_poll, redrive
from tests.send_support import AUTH, URL, post_send, send_body

pytestmark = pytest.mark.slow

FLOW = "send"
WORKER, QUEUE = "SendWorkerFunction", "SendQueue"
LEASE = {"SEND_LEASE_SECONDS": "1"}  # a dead worker's claim lapses in a second, not the default 90
ROWS = 2  # each its own sender (pacing is per sender) and chat


def _bodies(tag: str) -> list[dict[str, Any]]:
    return [send_body(f"{tag} hello {i}", chat=f"chat_{tag}_{i}", sender=f"acc_{tag}_{i}") for i in range(ROWS)]


def _enqueue(stack: Any, tag: str) -> None:
    for i, b in enumerate(_bodies(tag)):
        assert post_send(stack, b, key=f"{tag}-{i}").status in (200, 201, 202)


def _kill_worker(stack: Any, boundary: str) -> None:
    kill_poll(stack, boundary, WORKER, QUEUE, extra_env=LEASE)
    time.sleep(1.2)  # the lease is Postgres time: let it lapse for real


def _recover(stack: Any, db: Any) -> None:
    """What production runs on its own: reapers every minute, SQS redelivery after the visibility timeout."""
    for _ in range(3):
        reap()
        redrive(stack, WORKER, QUEUE)
        open_rows = db.execute("SELECT count(*) FROM send_queue WHERE status <> 'sent'").fetchone()[0]
        if not open_rows and stack.queue_depth(QUEUE) == 0:
            return


def crash_worker_after_claim(stack: Any, db: Any) -> dict[str, int]:
    _enqueue(stack, "claim")
    _kill_worker(stack, "send.worker.after_claim")
    assert stack.fakes.count("unipile.send") == 0
    _recover(stack, db)
    return {}


def crash_worker_after_provider(stack: Any, db: Any) -> dict[str, int]:
    _enqueue(stack, "prov")
    _kill_worker(stack, "send.worker.after_provider")
    assert stack.fakes.count("unipile.send") == 1  # the provider has it; our row does not know
    assert reap(["send_leases"]) == {"send_leases": 1}  # lease lapsed -> unknown, never pending
    assert db.execute("SELECT count(*) FROM send_queue WHERE status = 'unknown'").fetchone()[0] == 1
    _recover(stack, db)
    return {"reconciled": 1}


def crash_worker_after_complete(stack: Any, db: Any) -> dict[str, int]:
    _enqueue(stack, "done")
    _kill_worker(stack, "send.worker.after_complete")
    assert db.execute("SELECT count(*) FROM send_queue WHERE status = 'sent'").fetchone()[0] == 1
    _recover(stack, db)
    return {}


def crash_relay_after_sqs(stack: Any, db: Any) -> dict[str, int]:
    bodies = _bodies("relay")
    for i, b in enumerate(bodies):
        headers = {**AUTH, "idempotency-key": f"relay-{i}"}
        kill_http(stack, "send.relay.after_sqs", "SendEnqueueFunction", "POST", URL, json.dumps(b).encode(), headers)
    # the rows committed, the messages went out, the outbox records were never marked relayed
    assert db.execute("SELECT count(*) FROM send_queue").fetchone()[0] == ROWS
    # the client retries its POST with the same key: the same rows, no new ones
    for i, b in enumerate(bodies):
        assert post_send(stack, b, key=f"relay-{i}").status in (200, 201, 202)
    assert db.execute("SELECT count(*) FROM send_queue").fetchone()[0] == ROWS
    _recover(stack, db)
    return {}


def crash_reconcile_after_lookup(stack: Any, db: Any) -> dict[str, int]:
    _enqueue(stack, "recon")
    _kill_worker(stack, "send.worker.after_provider")
    reap(["send_leases"])
    # the reconciler dies after the provider said "sent", before it recorded so
    kill_call(stack, "send.reconcile.after_lookup", "tests.proofs.children:reap", ["send_reconcile"])
    assert db.execute("SELECT count(*) FROM send_queue WHERE status = 'unknown'").fetchone()[0] == 1
    _recover(stack, db)
    return {"reconciled": 1}


SCENARIOS: dict[str, Callable[[Any, Any], dict[str, int]]] = {
    "send.worker.after_claim": crash_worker_after_claim,
    "send.worker.after_provider": crash_worker_after_provider,
    "send.worker.after_complete": crash_worker_after_complete,
    "send.relay.after_sqs": crash_relay_after_sqs,
    "send.reconcile.after_lookup": crash_reconcile_after_lookup,
}


@pytest.mark.parametrize("boundary", sorted(SCENARIOS))
def test_sigkill_at_boundary_then_recovery_sends_each_message_once(stack, db, proof, monkeypatch, boundary):
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    monkeypatch.setenv("SEND_RELAY_GRACE_SECONDS", "0")
    extra = SCENARIOS[boundary](stack, db)
    # THEN every queued message reached its chat exactly once, and Postgres says sent, once
    per_chat = {e["key"]: e["count"] for e in stack.fakes.effects() if e["kind"] == "unipile.send"}  # delivered
    assert len(per_chat) == ROWS and set(per_chat.values()) == {1}, per_chat
    resent, lost = sum(n - 1 for n in per_chat.values()), ROWS - len(per_chat)
    statuses = dict(db.execute("SELECT status::text, count(*) FROM send_queue GROUP BY 1").fetchall())
    assert statuses == {"sent": ROWS}
    ledger = dict(db.execute("SELECT settled_by, count(*) FROM sent_messages GROUP BY 1").fetchall())
    assert sum(ledger.values()) == ROWS
    assert ledger.get("reconciliation", 0) == extra.get("reconciled", 0)
    assert stack.queue_depth(QUEUE) == 0 and dlq_depth(stack) == 0
    how = f", {ledger['reconciliation']} unknown -> reconciled from the provider's list" if extra else ""
    proof.record(
        kind="crash",
        flow=FLOW,
        name=boundary,
        cases=ROWS,
        held=f"{statuses['sent']}/{ROWS} messages sent exactly once (counted at the fake Unipile){how}; "
        f"{resent} resent, {lost} lost",
    )
