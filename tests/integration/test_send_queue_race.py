"""The race of the LinkedIn send incident: overlapping workers over the same queued rows, crashes around the provider
call, and concurrent enqueues of one key. Workers are spawned processes running the real handler;
the fake Unipile server counts every send. Postgres is the guarantee (moto's FIFO forgets dedup
ids once a message is deleted, so no assertion here rests on SQS dedup)."""

from __future__ import annotations

import json
import random
import time
from collections import Counter

import pytest

from exactly_once.sends import queue as send_queue
from exactly_once.sends.request import SendRequest
from tests.procs import deliver, run_parallel, work
from tests.send_support import AUTH, URL, delivered, drain, reap, relay_in_child, row, send_body, work_concurrently

pytestmark = pytest.mark.slow


def _queue(db, n: int, *, sender: str = "acc_race") -> list[str]:
    """n rows queued (each its own chat and text); the SendQueue message bodies that point at them."""
    bodies = []
    with db.transaction():
        for i in range(n):
            queued = send_queue.enqueue(
                db,
                SendRequest(f"race-{i}", "unipile", sender, f"chat_{i}", {"text": f"Hello prospect {i}"}),
            )
            bodies.append(json.dumps({"send_id": queued.id, "outbox_id": queued.id}))
    return bodies


def _overlapping(stack, bodies: list[str], latency: tuple[float, float], consumers: int = 1) -> list[int]:
    """3 workers, each handed EVERY row (forward, backward, shuffled): the seed's overlapping crons.

    With ``consumers`` > 1 each worker runs that many concurrent invocations over its order (its
    own connection each, as concurrent Lambda invocations), so slow sends still fit in the test."""
    stack.fakes.state["unipile_config"]["latency"] = latency
    shuffled = random.Random(3).sample(bodies, len(bodies))
    start = time.time() + 3
    orders = [bodies, list(reversed(bodies)), shuffled]
    if consumers > 1:
        return run_parallel(work_concurrently, [(stack.env, order, start, consumers) for order in orders], 3)
    return run_parallel(work, [(stack.env, order, start, "SendWorkerFunction") for order in orders], 3)


def _assert_each_sent_once(stack, db, n: int) -> None:
    per_key = Counter(c.key for c in stack.fakes.calls if c.kind == "unipile.send")
    assert len(per_key) == n
    assert set(per_key.values()) == {1}  # provider calls per queued row: exactly 1.00
    assert db.execute("SELECT status::text, count(*) FROM send_queue GROUP BY 1").fetchall() == [("sent", n)]
    assert db.execute("SELECT count(DISTINCT send_id), count(*) FROM sent_messages").fetchone() == (n, n)


def test_three_overlapping_workers_over_200_rows_send_each_exactly_once(stack, db):
    # The seed's numbers: 3 overlapping workers over 200 queued rows, the provider taking 3-5 s per
    # send. Each worker runs 5 concurrent invocations (15 in flight at most), so 200 x 4 s of sends
    # take about a minute; every worker still reaches every row, most of them while another is in
    # the middle of the provider call (the seed's window between "select pending" and "sent").
    bodies = _queue(db, 200)
    started = time.monotonic()
    failures = _overlapping(stack, bodies, (3.0, 5.0), consumers=5)
    assert failures == [0, 0, 0]
    assert time.monotonic() - started < 120
    _assert_each_sent_once(stack, db, 200)
    # every worker met rows the others held or had sent, and the claim stopped each of them
    assert db.execute("SELECT max(attempts) FROM send_queue").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM send_queue WHERE status = 'processing'").fetchone()[0] == 0


def test_three_overlapping_workers_at_the_seeds_3_to_5_seconds_per_send(stack, db):
    bodies = _queue(db, 12)
    assert _overlapping(stack, bodies, (3.0, 5.0)) == [0, 0, 0]
    _assert_each_sent_once(stack, db, 12)


def test_crash_after_the_provider_accepted_is_reconciled_not_resent(stack, db, monkeypatch):
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    [body] = _queue(db, 1)
    # GIVEN a worker killed (SIGKILL) after Unipile accepted the message, before it recorded `sent`
    env = {**stack.env, "EO_CRASH_AT": "send.worker.after_provider", "SEND_LEASE_SECONDS": "1"}
    with pytest.raises(Exception):  # noqa: B017 - the child dies by SIGKILL: BrokenProcessPool
        run_parallel(work, [(env, [body], time.time(), "SendWorkerFunction")], 1)
    assert row(db, 1)["status"] == "processing"
    assert stack.fakes.count("unipile.send") == 1
    # WHEN SQS redelivers the message before the lease ran out: the claim stops it
    assert run_parallel(work, [(stack.env, [body], time.time(), "SendWorkerFunction")], 1) == [0]
    # AND the lease runs out and the reapers run
    time.sleep(1.1)
    results = reap(["send_leases", "send_reconcile"])
    assert results == {"send_leases": 1, "send_reconcile": 1}
    # THEN reconciliation found the message in the chat: sent, recorded, never resent
    settled = row(db, 1)
    assert settled["status"] == "sent"
    assert db.execute("SELECT settled_by FROM sent_messages").fetchall() == [("reconciliation",)]
    assert stack.fakes.count("unipile.send") == 1
    assert delivered(stack, "chat_0") == 1


def test_crash_before_the_provider_call_is_sent_once(stack, db, monkeypatch):
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    [body] = _queue(db, 1)
    env = {**stack.env, "EO_CRASH_AT": "send.worker.after_claim", "SEND_LEASE_SECONDS": "1"}
    with pytest.raises(Exception):  # noqa: B017 - BrokenProcessPool from the SIGKILL
        run_parallel(work, [(env, [body], time.time(), "SendWorkerFunction")], 1)
    assert stack.fakes.count("unipile.send") == 0
    time.sleep(1.1)
    reap(["send_leases", "send_reconcile"])  # unknown -> the chat has nothing -> pending, relayed
    drain(stack)
    assert row(db, 1)["status"] == "sent"
    assert stack.fakes.count("unipile.send") == 1
    assert delivered(stack, "chat_0") == 1


def test_concurrent_duplicate_enqueues_make_one_row(stack, db):
    # GIVEN 4 processes posting the same key 10 times each, at the same moment
    payload = json.dumps(send_body("Hi Ivonne", chat="chat_ivonne")).encode()
    headers = {**AUTH, "idempotency-key": "campaign-7-ivonne-step-1"}
    start = time.time() + 3
    statuses = run_parallel(
        deliver, [(stack.env, "SendEnqueueFunction", [("POST", URL, payload, headers)] * 10, start) for _ in range(4)]
    )
    # THEN exactly one created the row, 39 found it
    flat = sorted(s for per in statuses for s in per)
    assert flat == [200] * 39 + [201]
    assert db.execute("SELECT count(*) FROM send_queue").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM send_outbox").fetchone()[0] == 1
    # AND the same key with another text is refused
    other = json.dumps(send_body("Hi Ivonne!!", chat="chat_ivonne")).encode()
    assert run_parallel(deliver, [(stack.env, "SendEnqueueFunction", [("POST", URL, other, headers)], 0)], 1) == [[409]]
    drain(stack)
    assert delivered(stack, "chat_ivonne", "Hi Ivonne") == 1


def test_crash_between_sqs_and_the_outbox_mark_sends_once(stack, db, monkeypatch):
    monkeypatch.setenv("SEND_RELAY_GRACE_SECONDS", "0")
    _queue(db, 1)
    # GIVEN the relay died (SIGKILL) after SendMessageBatch, before marking the outbox record
    env = {**stack.env, "EO_CRASH_AT": "send.relay.after_sqs"}
    with pytest.raises(Exception):  # noqa: B017 - BrokenProcessPool from the SIGKILL
        run_parallel(relay_in_child, [(env, [1])], 1)
    assert stack.queue_depth("SendQueue") == 1
    assert db.execute("SELECT relayed_at FROM send_outbox").fetchone()[0] is None
    # WHEN the sweeper relays the record again (a second message for the same row)
    assert reap(["send_outbox"])["send_outbox"] == 1
    drain(stack)
    # THEN the row was sent once (the copy shares the first's FIFO dedup id; had it arrived, the
    # claim would stop it, as the overlap tests show)
    assert row(db, 1)["status"] == "sent"
    assert stack.fakes.count("unipile.send") == 1
