"""The operator routes' bearer-token check, and the authorizer function that reads the token per request."""

from __future__ import annotations

import importlib
import json

import pytest

from exactly_once.core.errors import ConfigurationError
from exactly_once.ingest.authorizer import MIN_TOKEN_BYTES, check_token, is_authorized

TOKEN = "operator-token-0123456789abcdef-0123"
OTHER = "operator-token-fedcba9876543210-9999"


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"Bearer {OTHER}", False),
        (TOKEN, False),
        ("", False),
    ],
)
def test_bearer_token_check(header, ok):
    assert is_authorized({"Authorization": header}, TOKEN) is ok


def test_an_empty_configured_token_denies_everything():
    assert is_authorized({"authorization": "Bearer "}, "") is False


@pytest.mark.parametrize("short", ["tok", "x" * (MIN_TOKEN_BYTES - 1), "local-api-token-test"])
def test_a_configured_token_under_32_bytes_is_refused_and_opens_nothing(short):
    # Issue 16: a short operator token can be guessed; it must never authorize, and must not start.
    assert MIN_TOKEN_BYTES == 32
    with pytest.raises(ConfigurationError, match="32 bytes"):
        check_token(short)
    assert is_authorized({"authorization": f"Bearer {short}"}, short) is False


def test_no_token_and_a_long_token_pass_the_start_check():
    check_token("")  # not configured: every request is denied (the handler says so), the function still starts
    check_token("y" * MIN_TOKEN_BYTES)


def _authorizer(monkeypatch):
    from devstack.lambda_runtime import add_code_paths

    add_code_paths()
    import api_authorizer

    return importlib.reload(api_authorizer)


def test_the_authorizer_reads_the_token_per_request_and_denies_without_one(monkeypatch):
    monkeypatch.delenv("APP_SECRET_ARN", raising=False)
    monkeypatch.delenv("API_TOKEN", raising=False)
    api_authorizer = _authorizer(monkeypatch)
    event = {"routeKey": "POST /sends", "headers": {"authorization": f"Bearer {TOKEN}"}}
    # No token configured: every request is denied, nothing raises at import or per request.
    assert api_authorizer.handler(event, None) == {"isAuthorized": False}
    monkeypatch.setenv("API_TOKEN", OTHER)
    assert api_authorizer.handler(event, None) == {"isAuthorized": False}
    # Rotated: the next request sees the new token, no cold start needed.
    monkeypatch.setenv("API_TOKEN", TOKEN)
    assert api_authorizer.handler(event, None) == {"isAuthorized": True}


def test_the_authorizer_refuses_to_start_with_a_short_token(monkeypatch):
    monkeypatch.delenv("APP_SECRET_ARN", raising=False)
    monkeypatch.setenv("API_TOKEN", "short-operator-token")
    with pytest.raises(ConfigurationError, match="API_TOKEN"):
        _authorizer(monkeypatch)


def test_every_denial_is_counted(monkeypatch, capsys):
    monkeypatch.delenv("APP_SECRET_ARN", raising=False)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.setenv("API_TOKEN", TOKEN)
    api_authorizer = _authorizer(monkeypatch)
    capsys.readouterr()
    for header in (f"Bearer {OTHER}", "", f"Bearer {TOKEN}"):
        api_authorizer.handler({"routeKey": "GET /console/api/overview", "headers": {"authorization": header}}, None)
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    denied = [v for b in blobs if "OperatorRequestsDenied" in b for v in _values(b["OperatorRequestsDenied"])]
    assert sum(denied) == 2 and all(b["provider"] == "operator" for b in blobs if "OperatorRequestsDenied" in b)


def _values(value):
    return value if isinstance(value, list) else [value]
