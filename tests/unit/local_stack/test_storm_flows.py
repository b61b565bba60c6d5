"""The demo's storm flows without a stack: every delivery signed as the provider signs it, keyed as the adapter keys it.

Each flow's deliveries go through the real adapter (authenticate, split) with the
stack's kind of secrets, and, where the provider ships a verifier, through that too
(standardwebhooks, stripe, slack_sdk): the storm's signatures are not merely the
ones our own code accepts.
"""

from __future__ import annotations

import json

import pytest
import standardwebhooks
import stripe
from slack_sdk.signature import SignatureVerifier

from devstack.env_local import dev_value
from devstack.lambda_runtime import apigw_event
from devstack.storm import Ack, Delivery, answer_counts
from devstack.storm_flows import GENERIC, GenericFlow, SendsFlow, UnipileFlow, discover
from exactly_once.flows.generic.github import GitHubAdapter
from exactly_once.flows.generic.slack import SlackAdapter
from exactly_once.flows.generic.standard import StandardWebhooksAdapter, parse_secrets
from exactly_once.flows.generic.stripe import StripeAdapter
from exactly_once.flows.unipile.adapter import UnipileAdapter
from exactly_once.ingest.adapters.base import WebhookAdapter
from exactly_once.ingest.apigw import Request
from tests.harness import TEST_SECRETS

# Secrets shaped as `make run` generates them (random per machine), not the test constants.
PARAMETERS = {name: dev_value(name, TEST_SECRETS[name]) for _, name in GENERIC.values()}
PARAMETERS |= {
    "UNIPILE_WEBHOOK_SECRET": dev_value("UNIPILE_WEBHOOK_SECRET", TEST_SECRETS["UNIPILE_WEBHOOK_SECRET"]),
    "API_TOKEN": "local-api-token",
    "UNIPILE_BASE_URL": "http://127.0.0.1:3000/fake/unipile",
    "WHATSAPP_BASE_URL": "http://127.0.0.1:3000/fake/whatsapp",
}


def adapter_for(provider: str) -> WebhookAdapter:
    if provider == "standard":
        return StandardWebhooksAdapter(parse_secrets(PARAMETERS["STANDARD_WEBHOOK_SECRETS"]))
    if provider == "stripe":
        return StripeAdapter([PARAMETERS["STRIPE_WEBHOOK_SECRET"]])
    if provider == "github":
        return GitHubAdapter(PARAMETERS["GITHUB_WEBHOOK_SECRET"])
    return SlackAdapter(PARAMETERS["SLACK_SIGNING_SECRET"])


def request_of(d: Delivery, path_params: dict[str, str] | None = None) -> Request:
    return Request.from_apigw_v2(apigw_event(d.method, d.path, d.body, d.signed_headers(), path_params))


@pytest.mark.parametrize("provider", sorted(GENERIC))
def test_generic_deliveries_pass_the_adapter_and_carry_its_keys(provider):
    # GIVEN the storm of one generic provider: 4 events, 3 copies each
    flow = GenericFlow(provider, PARAMETERS)
    deliveries = flow.deliveries(4, 3, naive=False)
    assert [d.wave for d in deliveries].count("later") == 4
    adapter = adapter_for(provider)
    keys = []
    for d in deliveries:
        # WHEN each is checked as the ingest function checks it
        params = {"source": flow.source} if provider == "standard" else None
        request = request_of(d, params)
        adapter.authenticate(request)  # raises on a bad signature or a stale timestamp
        [event] = adapter.split(request).events
        keys.append(event.key)
    # THEN the copies of an event share its key, and the keys are the ones the storm counts
    assert sorted(set(keys)) == sorted(flow.event_keys(4))
    assert len(keys) == 12


def test_standard_and_stripe_and_slack_signatures_verify_with_the_providers_packages():
    standard = GenericFlow("standard", PARAMETERS).deliveries(1, 1, naive=False)[0]
    headers = standard.signed_headers()
    secret = json.loads(PARAMETERS["STANDARD_WEBHOOK_SECRETS"])[GenericFlow("standard", PARAMETERS).source]
    standardwebhooks.Webhook(secret).verify(standard.body.decode(), headers)

    charge = GenericFlow("stripe", PARAMETERS).deliveries(1, 1, naive=False)[0]
    stripe.WebhookSignature.verify_header(
        charge.body.decode(), charge.signed_headers()["stripe-signature"], PARAMETERS["STRIPE_WEBHOOK_SECRET"], 300
    )

    slack = GenericFlow("slack", PARAMETERS).deliveries(1, 1, naive=False)[0]
    assert SignatureVerifier(PARAMETERS["SLACK_SIGNING_SECRET"]).is_valid_request(slack.body, slack.signed_headers())


def test_timestamped_copies_are_signed_when_sent_not_when_built():
    # GIVEN a Stripe storm built now
    later = [d for d in GenericFlow("stripe", PARAMETERS).deliveries(2, 3, naive=False) if d.wave == "later"]
    # THEN a later copy carries a signer, called at send time (a provider signs every attempt anew)
    assert all(d.sign is not None for d in later)
    assert "stripe-signature" not in later[0].headers
    assert "stripe-signature" in later[0].signed_headers()


def test_unipile_deliveries_carry_the_static_secret_header_and_the_adapter_keys():
    flow = UnipileFlow(PARAMETERS["UNIPILE_WEBHOOK_SECRET"], header="X-Custom-Secret")
    adapter = UnipileAdapter(PARAMETERS["UNIPILE_WEBHOOK_SECRET"], header="X-Custom-Secret")
    keys = set()
    for d in flow.deliveries(3, 2, naive=False):
        request = request_of(d)
        adapter.authenticate(request)
        [event] = adapter.split(request).events
        assert event.kind == "message_received"
        keys.add(event.key)
    assert keys == set(flow.event_keys(3))


def test_sends_reuse_one_idempotency_key_per_send_with_the_operator_token():
    flow = SendsFlow("tok")
    deliveries = flow.deliveries(3, 3, naive=False)
    by_event: dict[int, set[tuple[str, bytes]]] = {}
    for d in deliveries:
        assert (d.path, d.headers["authorization"]) == ("/sends", "Bearer tok")
        by_event.setdefault(d.event, set()).add((d.headers["idempotency-key"], d.body))
    assert all(len(v) == 1 for v in by_event.values())  # a retry: same key, same body
    assert flow.event_keys(3) == []  # no event log: Postgres answers for it
    assert {d.path for d in flow.deliveries(1, 1, naive=True)} == {"/local/naive/sends"}


def test_answers_are_counted_per_layer():
    d = Delivery(0, "POST", "/x", {}, b"", "burst")
    assert answer_counts(Ack(d, 202, 0.0, {"accepted": 1, "duplicates": 0, "rejected": 0})) == (1, 0, 0)
    slack = Ack(d, 200, 0.0, None, headers={"x-exactly-once": "accepted=0;duplicates=1;rejected=0"})
    assert answer_counts(slack) == (0, 1, 0)
    assert answer_counts(Ack(d, 201, 0.0, {"id": 7, "created": True})) == (1, 0, 0)
    assert answer_counts(Ack(d, 200, 0.0, {"id": 7, "created": False})) == (0, 0, 1)


def test_discover_finds_every_flow_and_refuses_real_provider_apis():
    routes = {
        "POST /webhooks/unipile",
        "POST /webhooks/standard/{source}",
        "POST /webhooks/stripe",
        "POST /webhooks/github",
        "POST /webhooks/slack",
        "POST /sends",
        "POST /webhooks/whatsapp",
    }
    found = {flow.name: reason for flow, reason in discover(PARAMETERS, routes)}
    assert {k for k, v in found.items() if v is None} == {"unipile", *GENERIC, "sends", "whatsapp"}
    real = {**PARAMETERS, "UNIPILE_BASE_URL": "https://api1.unipile.com:13111"}
    reasons = {flow.name: reason for flow, reason in discover(real, routes)}
    assert reasons["sends"] and "real people" in reasons["sends"]
    header = {"UnipileIngestFunction": {"UNIPILE_WEBHOOK_HEADER": "X-Other"}}
    unipile = next(f for f, _ in discover(PARAMETERS, routes, functions=header) if f.name == "unipile")
    assert "x-other" in unipile.deliveries(1, 1, naive=False)[0].headers
