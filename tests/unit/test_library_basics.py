"""Small library pieces without any network."""

from __future__ import annotations

import base64
import re

import pytest

from devstack.lambda_runtime import apigw_event
from exactly_once.core import queries
from exactly_once.core.errors import BadRequestError, ConfigurationError
from exactly_once.core.secrets import get_secret
from exactly_once.ingest.apigw import Request
from exactly_once.ingest.authorizer import is_authorized


def test_base64_bodies_are_decoded_to_the_exact_bytes():
    raw = "h\u00e9llo \U0001f600".encode()
    event = apigw_event("POST", "http://h/x", raw)
    event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    assert Request.from_apigw_v2(event).raw_body == raw


def test_invalid_base64_is_a_bad_request():
    event = apigw_event("POST", "http://h/x", b"")
    event["body"], event["isBase64Encoded"] = "***", True
    with pytest.raises(BadRequestError):
        Request.from_apigw_v2(event)


def test_deeply_nested_json_is_a_bad_request_not_a_crash():
    request = Request.from_apigw_v2(apigw_event("POST", "http://h/x", b"[" * 100_000 + b"]" * 100_000))
    with pytest.raises(BadRequestError):
        request.json()


def test_every_named_query_is_unique_and_parameterised():
    found = queries._all()
    assert "mail_apply" in found and "quarantine_put" in found
    for name, sql in found.items():
        assert not re.search(r"\{[a-z_0-9]*\}", sql.replace("'{}'", "")), f"{name} looks like a format string"
        assert re.search(r"%\(\w+\)s|^[^%]*$", sql, re.S), name


@pytest.mark.parametrize(
    ("header", "ok"),
    [("Bearer tok", True), ("bearer tok", True), ("Bearer tok2", False), ("tok", False), ("", False)],
)
def test_bearer_token_check(header, ok):
    assert is_authorized({"Authorization": header}, "tok") is ok


def test_an_empty_configured_token_denies_everything():
    assert is_authorized({"authorization": "Bearer "}, "") is False


def test_missing_secret_fails_fast(monkeypatch):
    monkeypatch.delenv("APP_SECRET_ARN", raising=False)
    monkeypatch.delenv("NOT_THERE", raising=False)
    with pytest.raises(ConfigurationError):
        get_secret("NOT_THERE")
    assert get_secret("NOT_THERE", required=False) == ""


def test_the_authorizer_reads_the_token_per_request_and_denies_without_one(monkeypatch):
    from devstack.lambda_runtime import add_code_paths

    add_code_paths()
    import api_authorizer

    event = {"routeKey": "POST /sends", "headers": {"authorization": "Bearer new-token"}}
    monkeypatch.delenv("APP_SECRET_ARN", raising=False)
    monkeypatch.delenv("API_TOKEN", raising=False)
    # No token configured: every request is denied, nothing raises at import or per request.
    assert api_authorizer.handler(event, None) == {"isAuthorized": False}
    monkeypatch.setenv("API_TOKEN", "old-token")
    assert api_authorizer.handler(event, None) == {"isAuthorized": False}
    # Rotated: the next request sees the new token, no cold start needed.
    monkeypatch.setenv("API_TOKEN", "new-token")
    assert api_authorizer.handler(event, None) == {"isAuthorized": True}
