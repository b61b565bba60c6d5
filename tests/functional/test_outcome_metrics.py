"""The rarer metrics of the catalogue, each driven by the outcome that should emit it through the real code path:
a Graph ticket insert that meets another writer's row (ConstraintViolationsRecovered), a LiveKit claim whose
worker outlived its lease (StaleClaimsReclaimed), a send whose provider answered after the client's timeout or
whose worker vanished (SendsUnknown), and a send row the reconciliation cannot settle for ten minutes
(the send_queue StuckRows gauge). Each reads the EMF blobs Powertools prints to stdout."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import psycopg

from devstack.lambda_runtime import LambdaContext
from exactly_once.core.telemetry import Metric
from exactly_once.flows.livekit import feedback
from exactly_once.sends import queue as send_queue
from tests import emf
from tests import livekit_support as lk
from tests import send_support as sends
from tests.graph_support import add_mail, body, item, post


def emitted(capsys: Any) -> dict[str, Counter[str]]:
    """metric name -> {provider dimension: total}, from every EMF blob printed since the last call."""
    totals: dict[str, Counter[str]] = {}
    for (provider, name), total in emf.emitted(capsys).items():
        totals.setdefault(name, Counter())[provider] += total
    return totals


def run_reapers(stack: Any) -> dict[str, int]:
    """The scheduled ClaimReaperFunction, every registered reaper, as EventBridge invokes it."""
    return stack.handler("ClaimReaperFunction")({}, LambdaContext("ClaimReaperFunction", timeout_s=120))


def _wait_for_lock_wait(database_url: str, timeout: float = 15.0) -> None:
    """Until some backend of this database waits on a lock (the worker's INSERT behind the other writer)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.05)
    raise AssertionError("the worker never waited on the other writer's row")


# -- Graph: ConstraintViolationsRecovered -----------------------------------------------------------------------


def test_graph_insert_meeting_another_writers_row_is_recovered_and_counted(stack, db, database_url, capsys):
    # GIVEN a new mail notified, and another writer (outside the advisory lock) inserting its ticket, uncommitted
    add_mail(stack, "m-race", "<race@example.com>")
    assert post(stack, body(item("m-race"))).status == 202
    other = psycopg.connect(database_url)
    other.execute("INSERT INTO tickets (external_message_id, mailbox) VALUES ('<race@example.com>', 'other')")
    capsys.readouterr()
    # WHEN the real worker handles the notification: its INSERT waits on that row, which then commits
    worker = threading.Thread(target=stack.drain)
    worker.start()
    try:
        _wait_for_lock_wait(database_url)
        other.commit()
    finally:
        other.close()
        worker.join(60)
    assert not worker.is_alive()
    # THEN the worker recovered the winner's ticket (no error, no second ticket) and counted it so
    got = emitted(capsys)
    assert got[Metric.CONSTRAINT_RECOVERED] == {"graph": 1}
    assert got.get(Metric.EFFECTS, Counter())["graph"] == 0
    assert got.get(Metric.FAILED, Counter())["graph"] == 0
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    assert db.execute("SELECT outcome FROM event_log").fetchall() == [("recovered",)]


# -- LiveKit: StaleClaimsReclaimed ------------------------------------------------------------------------------


def test_livekit_claim_past_its_lease_is_reclaimed_by_the_reaper_and_counted(stack, db, capsys):
    # GIVEN a worker claimed the room's feedback and hung: its lease has run out
    fid = lk.add_feedback(db)
    stale = feedback.claim_room(db, "RM_ZbhL7XyXTZxz", None, lease=0).claims[0]
    assert lk.feedback_row(db, fid)["status"] == "processing"
    capsys.readouterr()
    # WHEN the scheduled reaper runs
    results = run_reapers(stack)
    # THEN it took the claim back and counted one StaleClaimsReclaimed under the LiveKit flow
    assert results["livekit_feedback"] == 1
    reclaimed = emitted(capsys)[Metric.RECLAIMED]
    assert sum(reclaimed.values()) == 1, reclaimed
    (dimension,) = reclaimed
    assert dimension.startswith("livekit"), reclaimed  # the flow's provider ('livekit') or the reaper's name
    assert lk.feedback_row(db, fid)["status"] == "initiated"
    # AND the next run, with nothing stale, reclaims and counts nothing
    assert run_reapers(stack)["livekit_feedback"] == 0
    assert sum(emitted(capsys).get(Metric.RECLAIMED, Counter()).values()) == 0
    # AND the room is analysed once by the next worker; the hung one's completion is fenced out
    stack.drain()
    assert lk.feedback_row(db, fid)["status"] == "completed"
    assert feedback.complete(db, stale, {"result": {"summary": "late"}}) is False
    assert stack.fakes.count("llm.chat", "RM_ZbhL7XyXTZxz") == 1


# -- Send queue: SendsUnknown -----------------------------------------------------------------------------------


def _send_gone_unknown(stack: Any, db: Any, monkeypatch: Any, key: str) -> int:
    """A send whose provider accepted it but answered after the client's timeout: unknown."""
    monkeypatch.setenv("SEND_PROVIDER_TIMEOUT_SECONDS", "1")
    sends.behave(stack, "unipile.send", hang=2.0, hang_times=1)
    send_id = int(sends.post_send(stack, sends.send_body("Hi Gilad"), key=key).json()["id"])
    sends.drain(stack)
    assert sends.row(db, send_id)["status"] == "unknown"
    return send_id


def test_send_answered_after_the_timeout_goes_unknown_and_is_counted(stack, db, monkeypatch, capsys):
    capsys.readouterr()
    # WHEN Unipile takes longer than the client's timeout to answer a send
    send_id = _send_gone_unknown(stack, db, monkeypatch, "k-metric-timeout")
    # THEN the worker counted one SendsUnknown, no effect, and did not send again
    got = emitted(capsys)
    assert got[Metric.SENDS_UNKNOWN] == {"send_queue": 1}
    assert got.get(Metric.EFFECTS, Counter())["send_queue"] == 0
    assert stack.fakes.count("unipile.send") == 1
    assert sends.row(db, send_id)["attempts"] == 1


def test_send_whose_worker_vanished_goes_unknown_at_lease_expiry_and_is_counted(stack, db, capsys):
    # GIVEN a worker claimed a send and vanished: its lease ran out
    send_id = int(sends.post_send(stack, sends.send_body("Hi Lease"), key="k-metric-lease").json()["id"])
    assert isinstance(send_queue.claim(db, send_id), send_queue.SendClaim)
    db.execute("UPDATE send_queue SET lease_until = now() - interval '1 minute' WHERE id = %s", (send_id,))
    capsys.readouterr()
    # WHEN the lease reaper runs
    assert sends.reap(["send_leases"])["send_leases"] == 1
    # THEN the row is unknown (never pending), counted as SendsUnknown and as one claim taken back
    assert sends.row(db, send_id)["status"] == "unknown"
    got = emitted(capsys)
    assert got[Metric.SENDS_UNKNOWN] == {"send_queue": 1}
    assert sum(got[Metric.RECLAIMED].values()) == 1


# -- Send queue: StuckRows --------------------------------------------------------------------------------------


def test_send_row_unknown_for_ten_minutes_is_reported_by_the_stuck_gauge(stack, db, monkeypatch, capsys):
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")
    # GIVEN a send gone unknown, and Unipile's chat listing down, so reconciliation cannot settle it
    send_id = _send_gone_unknown(stack, db, monkeypatch, "k-metric-stuck")
    sends.behave(stack, "unipile.list", fail_times=1000, fail_status=503)
    capsys.readouterr()
    # WHEN the reaper runs while it is fresh: the gauge is emitted, at zero
    run_reapers(stack)
    assert emitted(capsys)[Metric.STUCK_ROWS]["send_queue"] == 0
    assert sends.row(db, send_id)["status"] == "unknown"
    # AND again ten minutes later, still unsettled
    db.execute(
        "UPDATE send_queue SET status_changed_at = now() - interval '10 minutes',"
        " updated_at = now() - interval '10 minutes' WHERE id = %s",
        (send_id,),
    )
    run_reapers(stack)
    # THEN the gauge (the alarm's metric) reports the one stuck row under send_queue, and nothing was resent
    got = emitted(capsys)
    assert got[Metric.STUCK_ROWS]["send_queue"] == 1
    assert sends.row(db, send_id)["status"] == "unknown"
    assert stack.fakes.count("unipile.send") == 1
