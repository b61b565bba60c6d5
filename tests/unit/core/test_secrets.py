"""Secrets: a required one that is missing fails fast; an optional one reads as empty."""

from __future__ import annotations

import pytest

from exactly_once.core import secrets
from exactly_once.core.errors import ConfigurationError
from exactly_once.core.secrets import get_secret


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


def test_with_a_secret_configured_the_environment_is_never_read(monkeypatch):
    import json
    import uuid

    import boto3
    from moto import mock_aws

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():  # in process: Powertools Parameters reads a real (moto) Secrets Manager
        doc = {"IMAP_PASSWORD_BOB": "bob-pw"}
        name = f"imap-{uuid.uuid4().hex}"
        arn = boto3.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(doc))["ARN"]
        # GIVEN the secret holds Bob's password, and the environment a value for Alice (planted, or stale)
        monkeypatch.setenv("IMAP_SECRET_ARN", arn)
        monkeypatch.setenv("IMAP_PASSWORD_ALICE", "from-the-environment")
        assert secrets.imap_password("IMAP_PASSWORD_BOB") == "bob-pw"
        with pytest.raises(ConfigurationError, match="not configured in the IMAP_SECRET_ARN secret"):
            secrets.imap_password("IMAP_PASSWORD_ALICE")
