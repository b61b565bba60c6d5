"""The scheduled reaper run: one reaper's failure skips none of the others and still flushes the
counters; StaleClaimsReclaimed counts reclaimed claims only, under the flow's provider; the
reconciliation stops taking rows while the outbox sweep and the gauges still have time."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from devstack.lambda_runtime import LambdaContext
from exactly_once.core.declaration import Flow, Part, Reaper
from exactly_once.core.errors import ConfigurationError
from exactly_once.core.telemetry import Metric
from exactly_once.ops import reapers as reaper
from exactly_once.ops.reapers import ReaperRunError, run_all
from exactly_once.sends import queue as send_queue
from exactly_once.sends.request import SendRequest
from tests.send_support import row

SENDER = "acc_reap"


def emitted(capsys) -> dict[tuple[str, str], float]:
    """(provider, metric) -> total, from the EMF blobs printed since the last call."""
    totals: dict[tuple[str, str], float] = {}
    for line in capsys.readouterr().out.splitlines():
        if '"_aws"' not in line:
            continue
        blob: dict[str, Any] = json.loads(line)
        for metric in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            values = blob[metric["Name"]]
            key = (blob["provider"], metric["Name"])
            totals[key] = totals.get(key, 0) + (sum(values) if isinstance(values, list) else values)
    return totals


def botocore_fails(conn: Any) -> int:
    raise EndpointConnectionError(endpoint_url="https://sqs.example.invalid")


def configuration_fails(conn: Any) -> int:
    raise ConfigurationError("environment variable SOMETHING is required")


def _queue(db, key: str) -> int:
    with db.transaction():
        queued = send_queue.enqueue(db, SendRequest(key, "unipile", SENDER, f"chat_{key}", {"text": f"hello {key}"}))
    return queued.id


def _unknown(db, key: str) -> int:
    """A row whose send timed out: unknown, its outbox record relayed long ago."""
    send_id = _queue(db, key)
    db.execute("UPDATE send_outbox SET relayed_at = now() WHERE send_id = %s", (send_id,))
    claim = send_queue.claim(db, send_id)
    assert isinstance(claim, send_queue.SendClaim)
    assert send_queue.settle(db, claim, "unknown", "timeout: test")
    return send_id


def _failing(name: str, function: str) -> tuple[Flow, Reaper]:
    flow = Flow(
        name, reapers=(Reaper(name, Part(__name__.rpartition(".")[0], f"{__name__.rpartition('.')[2]}:{function}")),)
    )
    return flow, flow.reapers[0]


def _with_failing_reapers(monkeypatch) -> None:
    names = reaper.registered()
    patched = [*names[:2], _failing("boom_botocore", "botocore_fails")]
    patched += [*names[2:4], _failing("boom_configuration", "configuration_fails"), *names[4:]]
    monkeypatch.setattr(reaper, "registered", lambda: patched)


def test_a_failing_reaper_skips_none_of_the_others_and_the_run_fails_at_the_end(stack, db, monkeypatch, capsys):
    monkeypatch.setenv("SEND_RELAY_GRACE_SECONDS", "0")
    # GIVEN a row whose after-commit relay never happened (the outbox sweep's work)
    send_id = _queue(db, "sweep-1")
    # AND a botocore error and a configuration error in two reapers that run before the sweep
    _with_failing_reapers(monkeypatch)
    capsys.readouterr()
    # WHEN the reapers run
    with pytest.raises(ReaperRunError) as raised:
        run_all(db)
    # THEN both failures are named, and every other reaper ran
    assert raised.value.failed == ["boom_botocore", "boom_configuration"]
    results = raised.value.results
    assert results["boom_botocore"] == results["boom_configuration"] == -1
    assert results["send_outbox"] == 1 and results["send_stuck"] == 0 and results["operations"] == 0
    assert set(results) == {spec.name for _, spec in reaper.registered()}
    assert stack.queue_depth("SendQueue") == 1
    assert row(db, send_id)["status"] == "pending"
    # AND the counters were flushed: the gauges and one failure per failed reaper
    got = emitted(capsys)
    assert got[("send_queue", Metric.STUCK_ROWS)] == 0
    assert ("livekit", Metric.STUCK_ROWS) in got
    assert got[("boom_botocore", Metric.REAPERS_FAILED)] == 1
    assert got[("boom_configuration", Metric.REAPERS_FAILED)] == 1


def test_the_scheduled_function_fails_after_every_reaper_ran(stack, db, monkeypatch, capsys):
    _with_failing_reapers(monkeypatch)
    capsys.readouterr()
    with pytest.raises(ReaperRunError):
        stack.handler("ClaimReaperFunction")({}, LambdaContext("ClaimReaperFunction", timeout_s=60))
    assert ("send_queue", Metric.STUCK_ROWS) in emitted(capsys)


def test_stale_claims_reclaimed_counts_claims_only_under_the_flows_provider(stack, db, monkeypatch, capsys):
    monkeypatch.setenv("SEND_RELAY_GRACE_SECONDS", "0")
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    # GIVEN a send whose worker died (its lease ran out), an unknown send to reconcile, and an
    # outbox record to relay
    dead = _queue(db, "dead-1")
    db.execute("UPDATE send_outbox SET relayed_at = now() WHERE send_id = %s", (dead,))
    assert isinstance(send_queue.claim(db, dead), send_queue.SendClaim)
    db.execute("UPDATE send_queue SET lease_until = now() - interval '1 second' WHERE id = %s", (dead,))
    _unknown(db, "unknown-1")
    _queue(db, "relay-1")
    # AND a mailbox job queued and never claimed in time
    db.execute(
        "INSERT INTO mailbox_configs (user_id, imap_host, imap_username, password_secret) "
        "VALUES ('carol', 'imap.invalid', 'carol', 'MAILBOX_PASSWORD_CAROL')"
    )
    db.execute(
        "INSERT INTO mailbox_jobs (job_id, user_id, slot, origin, status, lease_until) "
        "VALUES ('mbx-carol-1', 'carol', now(), 'schedule', 'queued', now() - interval '1 second')"
    )
    capsys.readouterr()
    # WHEN the reapers run
    results = run_all(db, only=["mailbox_jobs", "send_leases", "send_reconcile", "send_outbox"])
    # THEN each reaper did its work
    assert results == {"mailbox_jobs": 1, "send_leases": 1, "send_reconcile": 2, "send_outbox": 1}
    # AND only the two reclaimed claims count, each under its flow's provider
    reclaimed = {k: v for k, v in emitted(capsys).items() if k[1] == Metric.RECLAIMED}
    assert reclaimed == {("send_queue", Metric.RECLAIMED): 1, ("mailbox", Metric.RECLAIMED): 1}


class ShortOnTime(LambdaContext):
    """A context whose remaining time drops once ``rows`` reconciliations were allowed to start."""

    def __init__(self, rows: int) -> None:
        super().__init__(function_name="ClaimReaperFunction", timeout_s=60)
        self.rows = rows
        self.asked = 0

    def get_remaining_time_in_millis(self) -> int:
        self.asked += 1
        return 59_000 if self.asked <= self.rows else 20_000


def test_reconciliation_stops_in_time_for_the_outbox_sweep_and_the_gauges(stack, db, monkeypatch, capsys):
    monkeypatch.setenv("SEND_RELAY_GRACE_SECONDS", "0")
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    # GIVEN three unknown sends, and a row whose relay was missed
    unknown = [_unknown(db, f"late-{i}") for i in range(3)]
    missed = _queue(db, "missed-1")
    capsys.readouterr()
    # WHEN the scheduled function runs with time for two reconciliations only
    context = ShortOnTime(rows=2)
    results = stack.handler("ClaimReaperFunction")({}, context)
    # THEN two were reconciled (nothing in the chat: pending again), the third waits untouched
    assert results["send_reconcile"] == 2
    states = [(row(db, i)["status"], row(db, i)["reconcile_attempts"]) for i in unknown]
    assert sorted(states) == [("pending", 1), ("pending", 1), ("unknown", 0)]
    assert stack.fakes.count("unipile.list") == 2
    # AND the outbox sweep and the gauges ran after it
    assert results["send_outbox"] == 1
    assert db.execute("SELECT relayed_at IS NOT NULL FROM send_outbox WHERE send_id = %s", (missed,)).fetchone()[0]
    got = emitted(capsys)
    assert got[("send_queue", Metric.STUCK_ROWS)] == 0
    # WHEN the next run has its full time
    results = stack.handler("ClaimReaperFunction")({}, LambdaContext("ClaimReaperFunction", timeout_s=60))
    # THEN the third is reconciled, after one attempt
    assert results["send_reconcile"] == 1
    assert [row(db, i)["reconcile_attempts"] for i in unknown] == [1, 1, 1]


def test_no_reconciliation_starts_without_the_time_for_one(stack, db, monkeypatch):
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    send_id = _unknown(db, "late-x")
    results = stack.handler("ClaimReaperFunction")({}, ShortOnTime(rows=0))
    assert results["send_reconcile"] == 0
    assert row(db, send_id)["status"] == "unknown" and row(db, send_id)["reconcile_attempts"] == 0
    assert stack.fakes.count("unipile.list") == 0
