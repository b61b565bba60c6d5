"""Secrets: a required one that is missing fails fast; an optional one reads as empty."""

from __future__ import annotations

import pytest

from exactly_once.core import secrets
from exactly_once.core.errors import ConfigurationError
from exactly_once.core.secrets import get_secret


@pytest.fixture(autouse=True)
def _fresh_secrets_provider():
    """Powertools keeps its Secrets Manager provider (and its boto client) in a module dict: one made inside
    mock_aws would send a later test's requests to the real AWS endpoint."""
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    DEFAULT_PROVIDERS.clear()
    yield
    DEFAULT_PROVIDERS.clear()


@pytest.fixture
def secretsmanager(moto_server, monkeypatch):
    """Secrets Manager on the run's moto server, for Powertools Parameters too (``AWS_ENDPOINT_URL``).

    Not ``mock_aws``: its exit resets moto's in-process backends, which the session's moto server shares,
    and every queue and table of the tests after it on this worker would be gone.
    """
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return boto3.client("secretsmanager", endpoint_url=moto_server.url, region_name="us-east-1")


def test_missing_secret_fails_fast(monkeypatch):
    monkeypatch.delenv("APP_SECRET_ARN", raising=False)
    monkeypatch.delenv("NOT_THERE", raising=False)
    with pytest.raises(ConfigurationError):
        get_secret("NOT_THERE")
    assert get_secret("NOT_THERE", required=False) == ""


# -- IMAP passwords: the name comes from a database row ----------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["AWS_SESSION_TOKEN", "API_TOKEN", "GRAPH_CLIENT_SECRET", "IMAP_PASSWORD_", "imap_password_x", "IMAP_PASSWORD_A-B"],
)
def test_an_imap_password_name_outside_the_prefix_is_refused(name, monkeypatch):
    monkeypatch.setenv(name, "would-leak")
    with pytest.raises(ConfigurationError, match="password_secret must match"):
        secrets.imap_password(name)


def test_an_imap_password_comes_from_the_environment_only_without_a_secret(monkeypatch):
    monkeypatch.delenv("IMAP_SECRET_ARN", raising=False)
    monkeypatch.setenv("IMAP_PASSWORD_ALICE", "local-pw")
    assert secrets.imap_password("IMAP_PASSWORD_ALICE") == "local-pw"


def test_with_a_secret_configured_the_environment_is_never_read(monkeypatch, secretsmanager):
    import json
    import uuid

    # Powertools Parameters reads a real (moto) Secrets Manager
    doc = {"IMAP_PASSWORD_BOB": "bob-pw"}
    name = f"imap-{uuid.uuid4().hex}"
    arn = secretsmanager.create_secret(Name=name, SecretString=json.dumps(doc))["ARN"]
    # GIVEN the secret holds Bob's password, and the environment a value for Alice (planted, or stale)
    monkeypatch.setenv("IMAP_SECRET_ARN", arn)
    monkeypatch.setenv("IMAP_PASSWORD_ALICE", "from-the-environment")
    assert secrets.imap_password("IMAP_PASSWORD_BOB") == "bob-pw"
    with pytest.raises(ConfigurationError, match="not configured in the IMAP_SECRET_ARN secret"):
        secrets.imap_password("IMAP_PASSWORD_ALICE")


# -- secrets split by purpose (issue 16, item 5) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "purpose"),
    [
        ("API_TOKEN", "OPERATOR"),
        ("GRAPH_CLIENT_STATE", "GRAPH"),
        ("GRAPH_CLIENT_STATE_PREVIOUS", "GRAPH"),
        ("LIVEKIT_API_SECRET", "LIVEKIT"),
        ("LLM_API_KEY", "LLM"),
        ("WHATSAPP_APP_SECRET", "WHATSAPP"),
        ("UNIPILE_API_KEY", "UNIPILE"),
        ("STANDARD_WEBHOOK_SECRETS", "WEBHOOKS"),
        ("STRIPE_WEBHOOK_SECRET", "WEBHOOKS"),
        ("GITHUB_WEBHOOK_SECRET", "WEBHOOKS"),
        ("SLACK_SIGNING_SECRET", "WEBHOOKS"),
        ("SOMETHING_ELSE", None),
    ],
)
def test_each_secret_name_has_one_purpose(name, purpose):
    assert secrets.purpose_of(name) == purpose


def test_a_purpose_secret_is_read_alone_and_the_shared_document_only_for_purposes_without_one(
    monkeypatch, secretsmanager
):
    import json
    import uuid

    for purpose in ("OPERATOR", "GRAPH"):
        monkeypatch.delenv(f"SECRET_ARN_{purpose}", raising=False)
    monkeypatch.delenv("GRAPH_CLIENT_STATE", raising=False)
    monkeypatch.delenv("API_TOKEN", raising=False)
    client = secretsmanager

    def secret(doc: dict[str, str]) -> str:
        return client.create_secret(Name=f"s-{uuid.uuid4().hex}", SecretString=json.dumps(doc))["ARN"]

    shared = secret({"GRAPH_CLIENT_STATE": "from-the-shared-document", "API_TOKEN": "shared-token"})
    graph = secret({"GRAPH_CLIENT_STATE": "from-the-graph-secret"})
    monkeypatch.setenv("APP_SECRET_ARN", shared)
    # GIVEN Graph has a secret of its own, the operator token not (yet)
    monkeypatch.setenv("SECRET_ARN_GRAPH", graph)
    assert get_secret("GRAPH_CLIENT_STATE") == "from-the-graph-secret"
    assert get_secret("API_TOKEN") == "shared-token"
    # WHEN the operator token gets its own secret, without the key: never the shared document's value
    monkeypatch.setenv("SECRET_ARN_OPERATOR", graph)
    with pytest.raises(ConfigurationError, match="SECRET_ARN_OPERATOR"):
        get_secret("API_TOKEN")
