"""Send queue: 100 identical POST /sends (one idempotency key) from 4 processes at once, then 100 copies of its
queue message racing 4 send workers -> one row, one message at the fake Unipile."""

from __future__ import annotations

import json

import pytest

from tests.proofs.concurrency_support import COPIES, PROCESSES, http_storm, worker_storm
from tests.send_support import AUTH, URL, send_body

pytestmark = pytest.mark.slow


def test_hundred_identical_sends_and_hundred_racing_workers_send_once(stack, db, proof):
    body = json.dumps(send_body("storm hello", chat="chat_storm", sender="acc_storm")).encode()
    headers = {**AUTH, "idempotency-key": "storm-1"}
    statuses = http_storm(stack.env, "SendEnqueueFunction", ("POST", URL, body, headers))
    assert set(statuses) <= {200, 201, 202} and len(statuses) == COPIES
    assert db.execute("SELECT count(*) FROM send_queue").fetchone()[0] == 1
    # WHEN 4 send workers each get 25 copies of the row's queue message at the same moment
    send_id = db.execute("SELECT id FROM send_queue").fetchone()[0]
    failures = worker_storm(
        stack.env, json.dumps({"send_id": send_id, "outbox_id": send_id}), function="SendWorkerFunction"
    )
    stack.drain("SendWorkerFunction", "SendQueue")
    # THEN one message reached the chat, and the row says sent
    assert failures == 0
    assert stack.fakes.count("unipile.send") == 1
    assert db.execute("SELECT status::text FROM send_queue").fetchone()[0] == "sent"
    assert db.execute("SELECT count(*) FROM sent_messages").fetchone()[0] == 1
    proof.record(
        kind="concurrency",
        flow="send",
        name=f"{COPIES} identical POST /sends, then {COPIES} copies racing {PROCESSES} send workers",
        cases=2 * COPIES,
        held="1 row, 1 message at the fake Unipile, 0 worker failures",
    )
