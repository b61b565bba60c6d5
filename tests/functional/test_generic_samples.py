"""Every sample event of the generic adapters, re-signed for now by devstack.sign_sample, is accepted
by its real handler as API Gateway would deliver it (the sample file is the event)."""

from __future__ import annotations

import json

import pytest

from devstack.lambda_runtime import LambdaContext
from devstack.sign_sample import resign
from tests.generic_support import EVENTS, sample
from tests.harness import TEST_SECRETS

SAMPLES = {
    "unipile_message_received.json": "UnipileIngestFunction",
    "unipile_message_sent_by_account.json": "UnipileIngestFunction",
    "standard_webhook.json": "GenericIngestFunction",
    "stripe_event.json": "GenericIngestFunction",
    "github_ping.json": "GenericIngestFunction",
    "github_push.json": "GenericIngestFunction",
    "slack_event_callback.json": "GenericIngestFunction",
    "slack_url_verification.json": "GenericIngestFunction",
    "slack_block_actions.json": "GenericIngestFunction",
}


def test_every_generic_sample_is_listed():
    listed = {
        p.name
        for p in EVENTS.glob("*.json")
        if p.name.split("_")[0] in {"unipile", "standard", "stripe", "github", "slack"}
    }
    assert listed == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_resigned_sample_is_accepted_by_its_handler(stack, name):
    event = resign(sample(name), TEST_SECRETS)
    result = stack.handler(SAMPLES[name])(event, LambdaContext(function_name=SAMPLES[name]))
    assert result["statusCode"] == 200, result
    if name == "slack_url_verification.json":
        assert json.loads(result["body"])["challenge"] == json.loads(event["body"])["challenge"]


@pytest.mark.parametrize("name", ["stripe_event.json", "slack_event_callback.json", "standard_webhook.json"])
def test_the_committed_timestamped_samples_are_stale_until_resigned(stack, name):
    result = stack.handler("GenericIngestFunction")(sample(name), LambdaContext(function_name="GenericIngestFunction"))
    assert (result["statusCode"], json.loads(result["body"])["error"]) == (401, "stale_timestamp")
