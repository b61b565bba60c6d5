"""The metric catalogue, emitted per outcome: the EMF blobs Powertools prints, parsed from stdout."""

from __future__ import annotations

from devstack.fakes import Behaviour
from devstack.lambda_runtime import LambdaContext
from exactly_once.core.telemetry import Metric, counters
from exactly_once.ops import cli
from exactly_once.ops import gauges as ops_gauges
from tests.emf import emitted
from tests.graph_support import add_mail, body, forget_ingest, item, post


def test_ingest_counts_deliveries_accepted_events_and_duplicates_stopped_at_ingest(stack, capsys):
    add_mail(stack, "m1", "<m1@example.com>")
    capsys.readouterr()
    post(stack, body(item("m1"), item("m2")))
    post(stack, body(item("m1")))
    got = emitted(capsys)
    assert got[("graph", Metric.DELIVERIES)] == 2
    assert got[("graph", Metric.ACCEPTED)] == 2
    assert got[("graph", Metric.DUP_INGEST)] == 1


def test_authentication_failures_count_as_signature_failures(stack, capsys):
    capsys.readouterr()
    assert post(stack, body(item("m1", client_state="forged"))).status == 401
    assert post(stack, "{not json").status == 400
    got = emitted(capsys)
    assert got[("graph", Metric.SIGNATURE_FAILURES)] == 1
    assert got[("graph", Metric.REJECTED)] == 1
    assert got[("graph", Metric.ACCEPTED)] == 0


def test_worker_counts_effects_and_duplicates_stopped_by_the_event_log_and_by_postgres(stack, capsys):
    add_mail(stack, "m1", "<m1@example.com>")
    post(stack, body(item("m1")))
    post(stack, body(item("m1", change="updated", etag='W/"etag-2"')))
    capsys.readouterr()
    stack.drain()
    got = emitted(capsys)
    assert got[("graph", Metric.EFFECTS)] == 1
    assert got[("graph", Metric.DUP_DATABASE)] == 1  # "updated": the ticket exists (unique message id)
    # A re-delivery that passed ingest (its record expired) is stopped by the worker's event log.
    forget_ingest(stack)
    post(stack, body(item("m1")))
    capsys.readouterr()
    stack.drain()
    got = emitted(capsys)
    assert got[("graph", Metric.DUP_QUEUE)] == 1
    assert got[("graph", Metric.EFFECTS)] == 0


def test_quarantine_failure_and_replay_are_counted(stack, db, capsys):
    # A mail without internetMessageId: quarantined.
    add_mail(stack, "m1", "")
    post(stack, body(item("m1")))
    capsys.readouterr()
    stack.drain()
    assert emitted(capsys)[("graph", Metric.QUARANTINED)] == 1
    # Graph failing: the worker counts each failed attempt (SQS retries it).
    add_mail(stack, "m2", "<m2@example.com>")
    # 4 failures: the HTTP client retries twice, so the first attempt fails and the second lands.
    stack.fakes.behaviours["graph.get_message"] = Behaviour(fail_times=4, fail_status=503)
    post(stack, body(item("m2")))
    capsys.readouterr()
    stack.drain()
    got = emitted(capsys)
    assert got[("graph", Metric.FAILED)] == 1
    assert got[("graph", Metric.EFFECTS)] == 1
    # The operator replays the fixed mail: counted as a replay, then as an effect.
    add_mail(stack, "m1", "<m1@example.com>")
    qid = db.execute("SELECT id FROM quarantine").fetchone()[0]
    assert cli.main(["quarantine", "replay", str(qid), "--by", "ops@test"]) == 0
    capsys.readouterr()
    stack.drain()
    got = emitted(capsys)
    assert got[("graph", Metric.REPLAYED)] == 1
    assert got[("graph", Metric.EFFECTS)] == 1


def test_lifecycle_events_are_counted_once(stack, capsys):
    lifecycle = {
        "subscriptionId": "sub-1",
        "subscriptionExpirationDateTime": "2026-11-25T08:00:00Z",
        "clientState": item("x")["clientState"],
        "lifecycleEvent": "missed",
    }
    post(stack, body(lifecycle))
    capsys.readouterr()
    stack.drain()
    assert emitted(capsys)[("graph", Metric.LIFECYCLE)] == 1


def test_gauges_report_open_quarantine_and_stuck_rows_zero_included(stack, db, capsys):
    db.execute(
        "INSERT INTO quarantine (provider, event_key, reason, raw) VALUES"
        " ('graph', 'k1', 'r', '{}'), ('graph', 'k2', 'r', '{}'), ('whatsapp', 'k3', 'r', '{}')"
    )
    db.execute("UPDATE quarantine SET status = 'resolved' WHERE event_key = 'k2'")
    db.execute(
        "INSERT INTO user_feedback (room_name, status, lease_until, updated_at)"
        " VALUES ('stuck-room', 'processing', now() - interval '6 minutes', now() - interval '10 minutes'),"
        "        ('busy-room', 'processing', now() + interval '1 minute', now())"
    )
    capsys.readouterr()
    assert ops_gauges.emit(db) == 0
    counters.flush()
    got = emitted(capsys)
    assert got[("graph", Metric.OPEN_QUARANTINE)] == 1
    assert got[("whatsapp", Metric.OPEN_QUARANTINE)] == 1
    assert ("livekit", Metric.OPEN_QUARANTINE) in got  # zero is emitted too
    assert got[("livekit", Metric.STUCK_ROWS)] == 1
    assert ("mailbox", Metric.STUCK_ROWS) in got and got[("mailbox", Metric.STUCK_ROWS)] == 0


def test_the_reaper_run_emits_the_gauges(stack, capsys):
    capsys.readouterr()
    results = stack.handler("ClaimReaperFunction")({}, LambdaContext("ClaimReaperFunction"))
    assert results["operations"] == 0
    got = emitted(capsys)
    assert ("graph", Metric.OPEN_QUARANTINE) in got
    assert ("livekit", Metric.STUCK_ROWS) in got
