"""Secrets split by purpose (issue 16, item 5): with AppSecretArn empty (the default) the stack makes one secret
per purpose and each function may read only the ones its code uses; with an ARN, the one shared document."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.template import Template
from exactly_once.core import secrets

#: Which purposes' secrets each function reads, and why (what its code asks get_secret for).
READS = {
    "ApiAuthorizerFunction": {"OperatorSecret"},  # API_TOKEN
    "GraphIngestFunction": {"GraphSecret"},  # GRAPH_CLIENT_STATE(_PREVIOUS)
    "UnipileIngestFunction": {"UnipileSecret"},  # UNIPILE_WEBHOOK_SECRET
    "GenericIngestFunction": {"WebhooksSecret"},  # Standard Webhooks, Stripe, GitHub, Slack
    "LiveKitIngestFunction": {"LiveKitSecret"},  # LIVEKIT_API_KEY/SECRET
    "WhatsAppIngestFunction": {"WhatsAppSecret"},  # WHATSAPP_APP_SECRET, WHATSAPP_VERIFY_TOKEN
    "EventWorkerFunction": {"GraphSecret", "LlmSecret"},  # the mail fetch and lifecycle; the LiveKit analysis
    "JobWorkerFunction": {"ImapSecret"},  # IMAP_PASSWORD_* through IMAP_SECRET_ARN
    "ClaimReaperFunction": {"UnipileSecret", "WhatsAppSecret"},  # send reconciliation builds the channels
    "GraphSubscriptionsFunction": {"GraphSecret"},  # create and renew subscriptions
    "SendWorkerFunction": {"WhatsAppSecret", "UnipileSecret"},  # WHATSAPP_ACCESS_TOKEN, UNIPILE_API_KEY
}
INTERNET_FACING = {"ApiAuthorizerFunction", *(f for f in READS if f.endswith("IngestFunction"))}


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load()


def _refs(value: Any) -> set[str]:
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value)) if value else set()
    if isinstance(value, dict) and "Ref" in value:
        return {value["Ref"]}
    return set()


def secrets_read(template: Template, function: str) -> set[str]:
    """The app secrets a function may read, at the parameters' defaults (AppSecretArn empty: split)."""
    made = set(template.of_type("AWS::SecretsManager::Secret"))
    found: set[str] = set()
    for policy in template.functions()[function]["Properties"].get("Policies", []):
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            if "secretsmanager:GetSecretValue" not in statement.get("Action", []):
                continue
            resource = template.resolve(statement["Resource"])
            items = resource if isinstance(resource, list) else [resource]
            found |= _refs([template.resolve(i) for i in items]) & (made | {"AppSecretArn"})
    return found


def test_by_default_each_function_reads_only_its_own_purposes(template):
    for function in template.functions():
        assert secrets_read(template, function) == READS.get(function, set()), function


def test_an_internet_facing_function_reads_one_purpose_and_never_the_shared_document(template):
    for function in INTERNET_FACING:
        assert len(secrets_read(template, function)) == 1 and "AppSecretArn" not in secrets_read(template, function)


def test_every_purpose_the_library_knows_has_a_secret_named_in_the_environment(template):
    env = template.global_env()
    made = template.of_type("AWS::SecretsManager::Secret")
    for purpose in {p for _, p in secrets.PURPOSES}:
        (logical,) = _refs(template.resolve(env[f"SECRET_ARN_{purpose}"]))
        assert logical in made and made[logical]["Condition"] == "SplitSecrets"
    assert template.parameter_default("AppSecretArn") == ""  # split unless a stack keeps its one document
    # the operator token is generated at create, long enough for the authorizer
    generated = made["OperatorSecret"]["Properties"]["GenerateSecretString"]
    assert generated["GenerateStringKey"] == "API_TOKEN" and generated["PasswordLength"] >= 32


def test_the_send_worker_reads_the_forward_secret_only_when_forwarding_is_on():
    # Off by default (ForwardUrl empty): READS above. On: the send worker signs, so it reads the forward secret.
    on = Template.load()
    on.doc["Parameters"]["ForwardUrl"]["Default"] = "https://receiver.example.com/hooks"
    assert secrets_read(on, "SendWorkerFunction") == READS["SendWorkerFunction"] | {"ForwardSecret"}
    assert "ForwardSecret" not in secrets_read(on, "EventWorkerFunction")  # it only queues
