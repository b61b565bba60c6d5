"""The operator routes' bearer-token check, and the authorizer function that reads the token per request."""

from __future__ import annotations

import pytest

from exactly_once.ingest.authorizer import is_authorized


@pytest.mark.parametrize(
    ("header", "ok"),
    [("Bearer tok", True), ("bearer tok", True), ("Bearer tok2", False), ("tok", False), ("", False)],
)
def test_bearer_token_check(header, ok):
    assert is_authorized({"Authorization": header}, "tok") is ok


def test_an_empty_configured_token_denies_everything():
    assert is_authorized({"authorization": "Bearer "}, "") is False


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
