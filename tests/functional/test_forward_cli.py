"""`exactly-once forward list|replay` on the test stack: a forward the receiver refused is listed, replayed
under the same webhook-id, relayed by the sweeper and taken once; a second replay finds nothing to do."""

from __future__ import annotations

import json
import uuid

from exactly_once.ops import cli
from tests.forward_support import KIND, deliver, enable, forwards, received
from tests.send_support import behave, reap


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


def test_a_refused_forward_is_listed_replayed_and_taken_once(stack, db, capsys, monkeypatch):
    enable(stack, monkeypatch)
    monkeypatch.setenv("SEND_RELAY_GRACE_SECONDS", "0")
    # GIVEN a forward the receiver refused (400: failed, not retried)
    behave(stack, KIND, fail_times=1, fail_status=400)
    key = deliver(stack, f"cli-{uuid.uuid4().hex[:8]}")
    stack.drain()
    stack.drain("SendWorkerFunction", "SendQueue")
    (row,) = forwards(db)
    assert row["status"] == "failed" and received(stack) == []
    # WHEN the operator lists the forwards, then replays them
    code, out = run_cli(capsys, "forward", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and [(r["id"], r["status"], r["recipient"]) for r in listed] == [(row["id"], "failed", key)]
    code, out = run_cli(capsys, "forward", "replay", "--note", "receiver fixed", "--by", "oncall")
    assert code == 0 and json.loads(out.splitlines()[0]) == {"replayed": [row["id"]], "not_failed_or_in_review": []}
    # THEN the sweeper relays it and the receiver takes it once, under the event's key
    assert reap(["send_outbox"])["send_outbox"] == 1
    stack.drain("SendWorkerFunction", "SendQueue")
    assert forwards(db)[0]["status"] == "sent"
    assert [r["id"] for r in received(stack)] == [key]
    # AND replaying it again (it was sent) changes nothing and says so
    code, out = run_cli(capsys, "forward", "replay", str(row["id"]), "--note", "twice")
    assert code == 1 and json.loads(out.splitlines()[0]) == {"replayed": [], "not_failed_or_in_review": [row["id"]]}
    assert run_cli(capsys, "forward", "list")[1].strip() == "no forward failed or in review"
