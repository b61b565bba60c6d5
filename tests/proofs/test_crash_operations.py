"""Operator replay: SIGKILL between marking the row replayed and sending the event -> the replay is
visible as unsent, `--force` sends it, and the mail still makes one ticket."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.graph_support import add_mail, body, item, post
from tests.proofs.crash_support import dlq_depth, kill_call

pytestmark = pytest.mark.slow


def crash_replay_after_mark(stack: Any, db: Any) -> None:
    add_mail(stack, "m1", "")  # no internetMessageId: quarantined
    post(stack, body(item("m1")))
    stack.drain()
    (qid,) = db.execute("SELECT id FROM quarantine").fetchone()
    add_mail(stack, "m1", "<m1@example.com>")
    kill_call(stack, "ops.replay.after_mark", "exactly_once.ops.cli:main", ["quarantine", "replay", str(qid)])
    # The row is marked and the replay recorded, nothing was sent: the log shows it unsent.
    assert db.execute("SELECT status FROM quarantine").fetchone() == ("replayed",)
    assert db.execute("SELECT queue_message_id, outcome FROM replay_log").fetchall() == [(None, None)]
    assert stack.queue_depth("EventsQueue") == 0
    from exactly_once.ops import cli

    assert cli.main(["quarantine", "replay", str(qid), "--force"]) == 0
    stack.drain()


SCENARIOS: dict[str, Callable[[Any, Any], None]] = {
    "ops.replay.after_mark": crash_replay_after_mark,
}


@pytest.mark.parametrize("boundary", sorted(SCENARIOS))
def test_sigkill_during_a_replay_then_recovery_makes_one_effect(stack, db, proof, boundary):
    SCENARIOS[boundary](stack, db)
    tickets = db.execute("SELECT count(*) FROM tickets").fetchone()[0]
    assert tickets == 1
    replays = [r[0] for r in db.execute("SELECT outcome FROM replay_log ORDER BY id")]
    assert replays == [None, "ticket"]
    quarantined = db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert stack.queue_depth("EventsQueue") == 0 and dlq_depth(stack) == 0
    proof.record(
        kind="crash",
        flow="operations",
        name=boundary,
        cases=1,
        held=f"{quarantined} quarantined mail, replay killed after marking -> --force replay -> {tickets} ticket, "
        f"lineage kept ({len(replays)} replay_log rows)",
    )
