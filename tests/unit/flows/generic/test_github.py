"""The GitHub adapter without any network; GitHub has no verifier package: signed by hand per its docs
and cross-checked with the example GitHub publishes."""

from __future__ import annotations

import json

import pytest

from exactly_once.flows.generic.github import GitHubAdapter
from exactly_once.ingest.adapters.signing import hmac_sha256
from tests.generic_support import GITHUB_SECRET, github_headers, github_key, github_signature, sample_body
from tests.unit.flows.support import rejected, request


def test_github_published_example_matches():
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries (test values).
    secret, payload = "It's a Secret to Everybody", b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert "sha256=" + hmac_sha256(secret, payload).hex() == expected
    assert github_signature(payload, secret) == expected
    headers = {"x-hub-signature-256": expected, "x-github-delivery": "d-1", "x-github-event": "ping"}
    GitHubAdapter(secret).authenticate(request("/webhooks/github", payload, headers))


def _event(body: bytes, headers: dict[str, str]):
    req = request("/webhooks/github", body, headers)
    adapter = GitHubAdapter(GITHUB_SECRET)
    adapter.authenticate(req)
    (event,) = adapter.split(req).events
    return event


def test_github_push_keyed_by_its_signed_bytes_grouped_by_repository():
    body = sample_body("github_push.json")
    event = _event(body, github_headers(body, "deliv-1", "push"))
    assert (event.key, event.kind, event.group) == (github_key(body), "push", "github:octo-org/octo-repo")
    assert event.payload["body"]["ref"] == "refs/heads/main"
    assert (event.payload["delivery"], event.payload["event_header"]) == ("deliv-1", "push")


def test_a_captured_body_resent_with_fresh_unsigned_headers_keeps_its_key_and_kind():
    # GIVEN one signed push, captured; the attacker re-sends it with new delivery ids and event names
    body = sample_body("github_push.json")
    original = _event(body, github_headers(body, "deliv-1", "push"))
    replays = [
        _event(body, github_headers(body, delivery, event))
        for delivery, event in (("fresh-1", "push"), ("fresh-2", "release"), ("fresh-3", "deployment"))
    ]
    # THEN every copy has the original's key (a duplicate at ingest and in the event log) and kind
    assert {(e.key, e.kind) for e in replays} == {(original.key, "push")}


def test_the_event_header_names_the_kind_only_when_the_body_does_not_and_only_a_plain_name():
    body = b'{"action": "opened", "issue": {"id": 1}}'
    assert _event(body, github_headers(body, "d", "issues")).kind == "issues"
    assert _event(body, github_headers(body, "d", "issues\x1b[31m")).kind == "unknown"
    ping = sample_body("github_ping.json")
    assert _event(ping, github_headers(ping, "d", "push")).kind == "ping"


def test_json_or_form_is_read_from_the_signed_bytes_not_the_content_type():
    body = sample_body("github_push.json")
    as_form = github_headers(body, "d", "push") | {"content-type": "application/x-www-form-urlencoded"}
    event = _event(body, as_form)
    assert (event.key, event.kind) == (github_key(body), "push")


def test_github_form_encoded_payload_is_read_and_signature_covers_the_raw_body():
    from urllib.parse import urlencode

    body = urlencode({"payload": json.dumps({"zen": "Design for failure.", "hook_id": 1})}).encode()
    headers = github_headers(body, "deliv-form", "ping") | {"content-type": "application/x-www-form-urlencoded"}
    req = request("/webhooks/github", body, headers)
    adapter = GitHubAdapter(GITHUB_SECRET)
    adapter.authenticate(req)
    (event,) = adapter.split(req).events
    assert (event.kind, event.payload["body"]["zen"]) == ("ping", "Design for failure.")


@pytest.mark.parametrize(
    ("header", "code"),
    [(None, "missing_signature"), ("sha256=00", "invalid_signature"), ("sha1=abc", "invalid_signature")],
)
def test_github_bad_signatures_are_401(header, code):
    body = sample_body("github_ping.json")
    headers = github_headers(body, "d", "ping")
    if header is None:
        del headers["x-hub-signature-256"]
    else:
        headers["x-hub-signature-256"] = header
    assert rejected(GitHubAdapter(GITHUB_SECRET), request("/webhooks/github", body, headers)) == code
