"""Send queue: 100 identical POST /sends (one idempotency key) from 4 processes at once, then 100 copies of its
queue message racing 4 send workers -> one row, one message at the fake Unipile."""

from __future__ import annotations

import json

import pytest

from tests.proofs.concurrency_support import COPIES, PROCESSES, THREADS, http_storm, worker_storm
from tests.send_support import AUTH, URL, delivered, send_body

pytestmark = pytest.mark.slow


def test_hundred_identical_sends_and_hundred_racing_workers_send_once(stack, db, proof):
    body = json.dumps(send_body("storm hello", chat="chat_storm", sender="acc_storm")).encode()
    headers = {**AUTH, "idempotency-key": "storm-1"}
    posts = http_storm(stack.env, "SendEnqueueFunction", ("POST", URL, body, headers))
    assert set(posts.statuses) <= {200, 201, 202} and len(posts.statuses) == COPIES
    assert posts.in_flight >= 2
    rows = db.execute("SELECT count(*) FROM send_queue").fetchone()[0]
    assert rows == 1
    # WHEN 4 send workers each get 25 copies of the row's queue message at the same moment
    send_id = db.execute("SELECT id FROM send_queue").fetchone()[0]
    storm = worker_storm(
        stack.env, json.dumps({"send_id": send_id, "outbox_id": send_id}), function="SendWorkerFunction"
    )
    stack.drain("SendWorkerFunction", "SendQueue")
    # THEN one message reached the chat, and the row says sent
    failures = sum(storm.statuses)
    assert failures == 0 and len(storm.statuses) == COPIES and storm.in_flight >= 2
    messages = delivered(stack, "chat_storm", "storm hello")
    assert messages == stack.fakes.count("unipile.send") == 1
    assert db.execute("SELECT status::text FROM send_queue").fetchone()[0] == "sent"
    assert db.execute("SELECT count(*) FROM sent_messages").fetchone()[0] == 1
    proof.record(
        kind="concurrency",
        flow="send",
        name=f"{COPIES} identical POST /sends, then {COPIES} copies racing {PROCESSES} send worker processes "
        f"x {THREADS} threads",
        cases=len(posts.statuses) + len(storm.statuses),
        held=f"{rows} row, {messages} message at the fake Unipile, {failures} worker failures; "
        f"{posts.in_flight} POSTs and {storm.in_flight} worker calls in flight at once",
    )
