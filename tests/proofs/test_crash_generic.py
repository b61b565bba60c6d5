"""Standard Webhooks, Stripe, GitHub, Slack: SIGKILL at every boundary -> each event recorded once in event_log."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from tests.generic_support import PROVIDERS
from tests.proofs.crash_support import after_invocation_deadline, dlq_depth, kill_http, kill_poll, redrive

pytestmark = pytest.mark.slow

INGEST = "GenericIngestFunction"
BASE = "http://127.0.0.1:3000"
EVENT_IDS = ("crash-1", "crash-2")


def _post(stack: Any, provider: str, event_id: str) -> Any:
    path, deliver, _ = PROVIDERS[provider]
    return stack.invoke_http(INGEST, "POST", BASE + path, *deliver(event_id))


def _accepted(answer: Any) -> int:
    if "x-exactly-once" in answer.headers:  # Slack: an empty 200, the counts in a header
        return int(dict(p.split("=") for p in answer.headers["x-exactly-once"].split(";"))["accepted"])
    return int(answer.json()["accepted"])


def crash_ingest(boundary: str, provider: str, stack: Any, db: Any) -> None:
    path, deliver, _ = PROVIDERS[provider]
    body, headers = deliver(EVENT_IDS[0])
    kill_http(stack, f"{provider}.ingest.{boundary}", INGEST, "POST", BASE + path, body, headers)
    assert stack.queue_depth("EventsQueue") == (1 if boundary == "after_enqueue" else 0)
    # The provider retries the same signed delivery; the dead invocation's reservation lasts until its deadline:
    # a 503 (a 2xx would make the provider stop retrying an event that may never have been queued).
    early = stack.invoke_http(INGEST, "POST", BASE + path, body, headers)
    assert early.status == 503 and early.json()["error"] == "in_progress"
    with after_invocation_deadline(INGEST):
        assert stack.invoke_http(INGEST, "POST", BASE + path, body, headers).status == 200
    assert _accepted(_post(stack, provider, EVENT_IDS[1])) == 1
    stack.drain()


def crash_worker_after_record(stack: Any, db: Any) -> None:
    for event_id in EVENT_IDS:
        assert _accepted(_post(stack, "stripe", event_id)) == 1
    kill_poll(stack, "generic.worker.after_record")
    assert db.execute("SELECT count(*) FROM event_log").fetchone()[0] == 1  # committed, never acked
    redrive(stack)


SCENARIOS: dict[str, Callable[[Any, Any], None]] = {
    **{
        f"{provider}.ingest.{boundary}": partial(crash_ingest, boundary, provider)
        for provider in sorted(PROVIDERS)
        for boundary in ("after_dedup", "after_enqueue")
    },
    "generic.worker.after_record": crash_worker_after_record,
}


@pytest.mark.parametrize("boundary", sorted(SCENARIOS))
def test_sigkill_at_boundary_then_recovery_records_each_event_once(stack, db, proof, boundary):
    # GIVEN two signed events WHEN a handler is SIGKILLed at the boundary and retries/redelivery run
    SCENARIOS[boundary](stack, db)
    # THEN each event has exactly one event_log row; nothing is lost, quarantined or parked
    flow = boundary.split(".")[0]
    provider = "stripe" if flow == "generic" else flow  # the worker scenario sends Stripe events
    key = PROVIDERS[provider][2]
    rows = dict(db.execute("SELECT event_key, outcome FROM event_log").fetchall())
    assert rows == {key(e): "recorded" for e in EVENT_IDS}
    quarantined = db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert quarantined == 0
    assert stack.queue_depth("EventsQueue") == 0 and dlq_depth(stack) == 0
    lost = sum(1 for e in EVENT_IDS if key(e) not in rows)
    proof.record(
        kind="crash",
        flow=flow,
        name=boundary,
        cases=len(EVENT_IDS),
        held=f"{len(rows)}/{len(EVENT_IDS)} events -> 1 event_log row each; {lost} lost, {quarantined} quarantined",
    )
