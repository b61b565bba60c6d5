"""WhatsApp, Unipile and the generic adapters: 100 identical signed deliveries from 4 processes at once, and
re-deliveries spread over (and past) each provider's dedup window on a simulated clock -> one effect each."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import time_machine

from tests import generic_support as g
from tests import whatsapp_support as wa
from tests.proofs.concurrency_support import COPIES, PROCESSES, THREADS, http_storm

pytestmark = pytest.mark.slow

DAY = 24 * 3600


@dataclass(frozen=True)
class Flow:
    provider: str
    function: str
    path: str
    deliver: Callable[[str], tuple[bytes, dict[str, str]]]  # a signed delivery of this event id, signed now
    window: int  # the ingest dedup window (the adapter's default)
    effects: str  # SQL: how many effects the event id made (%(id)s)


def _whatsapp(eid: str) -> tuple[bytes, dict[str, str]]:
    raw = wa.meta_bytes(wa.one_text(f"wamid.{eid}", "storm"))
    return raw, wa.headers_for(raw)


def _unipile(eid: str) -> tuple[bytes, dict[str, str]]:
    return g.unipile_message(eid), g.unipile_headers()


def _standard(eid: str) -> tuple[bytes, dict[str, str]]:
    body = g.sample_body("standard_webhook.json")
    return body, g.standard_headers(body, eid)


FLOWS = [
    Flow(
        "whatsapp",
        wa.FUNCTION,
        "/webhooks/whatsapp",
        _whatsapp,
        8 * DAY,
        "SELECT count(*) FROM whatsapp_messages WHERE wamid = 'wamid.' || %(id)s",
    ),
    Flow(
        "unipile",
        "UnipileIngestFunction",
        "/webhooks/unipile",
        _unipile,
        DAY,
        "SELECT count(*) FROM linkedin_messages WHERE message_id = %(id)s",
    ),
    Flow(
        "standard",
        "GenericIngestFunction",
        "/webhooks/standard/acme",
        _standard,
        3 * DAY,
        "SELECT count(*) FROM event_log WHERE provider = 'standard' AND event_key LIKE '%%' || %(id)s",
    ),
    Flow(
        "stripe",
        "GenericIngestFunction",
        "/webhooks/stripe",
        g.signed_stripe,
        4 * DAY,
        "SELECT count(*) FROM event_log WHERE provider = 'stripe' AND event_key LIKE '%%' || %(id)s",
    ),
    Flow(
        "github",
        "GenericIngestFunction",
        "/webhooks/github",
        g.signed_github,
        4 * DAY,
        # keyed by the body's digest; the delivery id travels in the payload
        "SELECT count(*) FROM event_log WHERE provider = 'github' AND payload->>'delivery' = %(id)s",
    ),
    Flow(
        "slack",
        "GenericIngestFunction",
        "/webhooks/slack",
        g.signed_slack,
        DAY,
        "SELECT count(*) FROM event_log WHERE provider = 'slack' AND event_key LIKE '%%' || %(id)s",
    ),
]
IDS = [f.provider for f in FLOWS]


def _settle(stack: Any) -> None:
    stack.drain()
    stack.drain("SendWorkerFunction", "SendQueue")


def _accepted(answer: Any) -> int:
    """Events ingest let through: the JSON body, or (Slack answers an empty 200) the x-exactly-once header."""
    if answer.body:
        return int(answer.json()["accepted"])
    fields = dict(part.split("=") for part in answer.headers["x-exactly-once"].split(";"))
    return int(fields["accepted"])


def _effects(db: Any, flow: Flow, eid: str) -> int:
    return int(db.execute(flow.effects, {"id": eid}).fetchone()[0])


@pytest.mark.parametrize("flow", FLOWS, ids=IDS)
def test_hundred_identical_signed_deliveries_from_four_processes_make_one_effect(stack, db, proof, flow):
    eid = f"storm-{flow.provider}-1"
    raw, headers = flow.deliver(eid)
    storm = http_storm(stack.env, flow.function, ("POST", f"http://127.0.0.1:3000{flow.path}", raw, headers))
    assert storm.statuses == [200] * COPIES  # each delivery's final answer (a 503 in_progress is retried)
    assert storm.in_flight >= 2
    queued = stack.queue_depth("EventsQueue")
    assert queued == 1
    _settle(stack)
    effects = _effects(db, flow, eid)
    assert effects == 1
    replies = stack.fakes.delivered("whatsapp.send")
    assert replies == stack.fakes.count("whatsapp.send") == (1 if flow.provider == "whatsapp" else 0)
    proof.record(
        kind="concurrency",
        flow=flow.provider,
        name=f"{COPIES} identical signed deliveries at once, {PROCESSES} processes x {THREADS} threads",
        cases=COPIES,
        held=f"{storm.statuses.count(200)} x 200, {queued} queued, {effects} effect"
        + (f", {replies} reply at the fake WhatsApp" if replies else "")
        + f"; {storm.in_flight} in flight at once, {storm.retried} x 503 in_progress retried",
    )


@pytest.mark.parametrize("flow", FLOWS, ids=IDS)
def test_redeliveries_spread_over_and_past_the_window_make_one_effect(stack, db, proof, flow):
    eid = f"spread-{flow.provider}-1"
    base = time.time()
    fractions = (0.0, 0.01, 0.25, 0.5, 0.99, None)  # None: an hour past the window
    accepted = []
    for f in fractions:
        at = base + (flow.window + 3600 if f is None else f * flow.window)
        with time_machine.travel(at):
            raw, headers = flow.deliver(eid)  # signed at the simulated time, as the provider would
            answer = stack.invoke_http(flow.function, "POST", f"http://127.0.0.1:3000{flow.path}", raw, headers)
            assert answer.status == 200, answer.body
            accepted.append(_accepted(answer))
            _settle(stack)
    # ingest stops every re-delivery inside the window; the one past it gets through and Postgres stops it
    assert accepted == [1, 0, 0, 0, 0, 1]
    assert _effects(db, flow, eid) == 1
    replies = stack.fakes.delivered("whatsapp.send")
    assert replies == stack.fakes.count("whatsapp.send") == (1 if flow.provider == "whatsapp" else 0)
    proof.record(
        kind="window",
        flow=flow.provider,
        name=f"re-deliveries over {(flow.window + 3600) / DAY:.1f} days (simulated clock)",
        cases=len(accepted),
        held=f"{accepted[1:-1].count(0)} stopped at ingest, {accepted[-1]} past the window stopped by Postgres, "
        f"{_effects(db, flow, eid)} effect" + (f", {replies} reply at the fake WhatsApp" if replies else ""),
    )
