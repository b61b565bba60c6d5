"""Chaos storms (short, fixed seed): per flow, unique events x copies from spawned processes through the real
handlers, with throttles, 500s and lost answers at DynamoDB and SQS, terminated and locked Postgres sessions,
failing and hanging provider fakes and SIGKILLs at random moments, all at once; then the recovery; then
exactly one effect per event, none without one, no send twice (``tests/chaos/``; the long run: ``make chaos``).
The mailbox jobs flow: triggers and scheduler ticks, IMAP hang-ups and resets mid-FETCH at a real dovecot, then
every mail processed once and never two IMAP sessions of one user at once (``tests/chaos/mailbox_flow.py``)."""

from __future__ import annotations

import pytest

from tests import mailbox_support
from tests.chaos import invariants, storm
from tests.chaos.flows import FLOWS

pytestmark = pytest.mark.slow

dovecot = mailbox_support.dovecot  # the mailbox flow's IMAP server, started only when that flow runs


@pytest.mark.parametrize("flow", FLOWS, ids=[f.name for f in FLOWS])
def test_chaos_storm_every_event_has_exactly_one_effect(
    stack, db, database_url, proof, tmp_path, monkeypatch, request, flow
):
    if flow.fixture and flow.attach:
        flow.attach(request.getfixturevalue(flow.fixture))
    monkeypatch.setenv("SEND_RELAY_GRACE_SECONDS", "0")
    monkeypatch.setenv("SEND_RECONCILE_AFTER_SECONDS", "0")  # the storm is over: no hung request can still land
    for name, value in flow.env.items():  # the recovery's workers and reapers run with the flow's settings too
        monkeypatch.setenv(name, value)
    settings = storm.Settings.from_env()
    outcome = storm.run(stack, db, database_url, flow, settings, tmp_path)
    eids = [f"chaos-{flow.name}-{settings.seed}-{i}" for i in range(settings.events)]
    invariants.check(stack, db, flow, eids, outcome)
    print(
        outcome.summary(),
        f"(ready {outcome.ready_seconds} s, storm {outcome.storm_seconds} s, all {outcome.seconds} s)",
    )
    # The storm, not the recovery, carries the deliveries: every copy was sent while the faults were on.
    copies = settings.events * settings.copies
    assert outcome.storm_deliveries >= copies, f"{outcome.storm_deliveries} of {copies} copies sent in the storm"
    if settings.long:  # long enough for the harness's Postgres terminations to land on the app's connections
        assert outcome.pg_terminated > 0, outcome.summary()
    proof.record(
        kind="chaos",
        flow=flow.name,
        name=f"{settings.events} events x {settings.copies} copies, faults at {settings.rate:.0%} (seed "
        f"{settings.seed}), {settings.processes} processes x {settings.threads} threads",
        cases=outcome.deliveries,
        processes=outcome.processes + 1,
        crashes=outcome.kills,
        held=outcome.summary().partition(": ")[2],
    )
