"""Hostile corpora for the signed providers: WhatsApp, Unipile, Standard Webhooks, Stripe, GitHub, Slack.

Each runs 50+ cases (tests/proofs/signed_corpus.py) against the provider's real ingest handler and, for what
was accepted, the real worker behind it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import generic_support as g
from tests import whatsapp_support as wa
from tests.proofs.hostile import run_corpus
from tests.proofs.signed_corpus import Spec, corpus

pytestmark = pytest.mark.slow


def _whatsapp_body(event_id: str) -> dict[str, Any]:
    return wa.one_text(f"wamid.{event_id}", "hostile")


def _sample(name: str) -> dict[str, Any]:
    return json.loads(g.sample_body(name))


def _with(doc: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**doc, **fields}


SPECS = [
    Spec(
        "whatsapp",
        wa.FUNCTION,
        "/webhooks/whatsapp",
        200,
        _whatsapp_body,
        lambda raw, eid, at: wa.headers_for(raw),
        "x-hub-signature-256",
        ("entry", 0, "changes", 0, "value", "messages", 0, "id"),
        max_body=3 * 1024 * 1024,
    ),
    Spec(
        "unipile",
        "UnipileIngestFunction",
        "/webhooks/unipile",
        200,
        lambda eid: json.loads(g.unipile_message(eid)),
        lambda raw, eid, at: g.unipile_headers(),
        "x-webhook-secret",
        ("message_id",),
        signs_body=False,
    ),
    Spec(
        "standard",
        "GenericIngestFunction",
        "/webhooks/standard/acme",
        200,
        lambda eid: _with(_sample("standard_webhook.json"), hostile_id=eid),
        lambda raw, eid, at: g.standard_headers(raw, eid, at=at),
        "webhook-signature",
        None,
        timestamped=True,
    ),
    Spec(
        "stripe",
        "GenericIngestFunction",
        "/webhooks/stripe",
        200,
        lambda eid: json.loads(g.stripe_event(eid)),
        lambda raw, eid, at: g.stripe_headers(raw, at=at),
        "stripe-signature",
        ("id",),
        timestamped=True,
    ),
    Spec(
        "github",
        "GenericIngestFunction",
        "/webhooks/github",
        200,
        lambda eid: _with(_sample("github_push.json"), hostile_id=eid),
        lambda raw, eid, at: g.github_headers(raw, eid),
        "x-hub-signature-256",
        None,
    ),
    Spec(
        "slack",
        "GenericIngestFunction",
        "/webhooks/slack",
        200,
        lambda eid: _with(_sample("slack_event_callback.json"), event_id=eid),
        lambda raw, eid, at: g.slack_headers(raw, at=at),
        "x-slack-signature",
        ("event_id",),
        timestamped=True,
    ),
]


@pytest.mark.parametrize("spec", SPECS, ids=[s.provider for s in SPECS])
def test_signed_provider_hostile_corpus(stack, db, proof, spec):
    cases = corpus(spec)
    result = run_corpus(stack, db, spec.function, spec.path, cases)
    assert not result.failures, "\n".join(result.failures)
    assert len(cases) >= 50 and not any(s >= 500 for s in result.statuses)
    proof.record(
        kind="hostile",
        flow=spec.provider,
        name="hostile, forged, stale and broken deliveries",
        cases=result.cases,
        held=(
            f"0 x 5xx; statuses {dict(sorted(result.statuses.items()))}; 0 unauthenticated queued; "
            f"{result.queued} authenticated events queued, {result.settled} settled, 0 lost"
        ),
    )
