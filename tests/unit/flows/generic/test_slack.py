"""The Slack adapter without any network, checked against slack_sdk's signature verifier."""

from __future__ import annotations

import json

import pytest
import time_machine
from slack_sdk.signature import SignatureVerifier

from exactly_once.core.errors import UnauthorizedError
from exactly_once.flows.generic.slack import SlackAdapter
from tests.generic_support import SLACK_SECRET, FixedClock, sample_body, slack_headers
from tests.unit.flows.support import NOW, rejected, request


def test_slack_accepts_what_slack_sdk_signs_and_slack_sdk_accepts_the_same():
    body = sample_body("slack_event_callback.json")
    headers = slack_headers(body, at=NOW)
    with time_machine.travel(NOW + 10, tick=False):
        SlackAdapter(SLACK_SECRET).authenticate(request("/webhooks/slack", body, headers))
    assert SignatureVerifier(SLACK_SECRET, clock=FixedClock(NOW + 10)).is_valid_request(body, headers)
    (event,) = SlackAdapter(SLACK_SECRET).split(request("/webhooks/slack", body, headers)).events
    assert (event.key, event.kind, event.group) == ("slack:Ev0SAMPLE0001", "app_mention", "slack:T0SAMPLE1:C0SAMPLE1")


@pytest.mark.parametrize(
    ("offset", "code"),
    [(299, None), (-299, None), (301, "stale_timestamp"), (-301, "future_timestamp")],
)
def test_slack_five_minute_tolerance_both_ways_as_slack_sdk(offset, code):
    body = sample_body("slack_event_callback.json")
    headers = slack_headers(body, at=NOW)
    req = request("/webhooks/slack", body, headers)
    with time_machine.travel(NOW + offset, tick=False):
        if code is None:
            SlackAdapter(SLACK_SECRET).authenticate(req)
        else:
            assert rejected(SlackAdapter(SLACK_SECRET), req) == code
    assert SignatureVerifier(SLACK_SECRET, clock=FixedClock(NOW + offset)).is_valid_request(body, headers) is (
        code is None
    )


def test_slack_wrong_secret_is_401():
    body = sample_body("slack_event_callback.json")
    req = request("/webhooks/slack", body, slack_headers(body, secret="not-the-secret"))
    assert rejected(SlackAdapter(SLACK_SECRET), req) == "invalid_signature"


def test_slack_url_verification_is_answered_only_when_signed():
    body = sample_body("slack_url_verification.json")
    answer = SlackAdapter(SLACK_SECRET).handshake(request("/webhooks/slack", body, slack_headers(body)))
    assert answer is not None
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"challenge": json.loads(body)["challenge"]}
    with pytest.raises(UnauthorizedError):
        SlackAdapter(SLACK_SECRET).handshake(
            request("/webhooks/slack", body, slack_headers(body, secret="forger-secret"))
        )


def test_slack_retry_headers_travel_with_the_event():
    body = sample_body("slack_event_callback.json")
    (event,) = SlackAdapter(SLACK_SECRET).split(request("/webhooks/slack", body, slack_headers(body, retry=2))).events
    assert event.payload["_delivery"] == {"retry_num": 2, "retry_reason": "http_timeout"}


def test_slack_interactive_payload_is_keyed_by_trigger_id():
    body = sample_body("slack_block_actions.json")
    headers = slack_headers(body, content_type="application/x-www-form-urlencoded")
    req = request("/webhooks/slack", body, headers)
    adapter = SlackAdapter(SLACK_SECRET)
    assert adapter.handshake(req) is None
    adapter.authenticate(req)
    (event,) = adapter.split(req).events
    assert (event.kind, event.key) == ("block_actions", "slack:trigger:1795334399.1234567890.abcdef0123456789")


def test_slack_slash_command_is_keyed_by_trigger_id():
    from urllib.parse import urlencode

    body = urlencode({"command": "/deploy", "text": "api", "team_id": "T1", "trigger_id": "13345224609.738474920"})
    req = request(
        "/webhooks/slack", body.encode(), slack_headers(body.encode(), content_type="application/x-www-form-urlencoded")
    )
    (event,) = SlackAdapter(SLACK_SECRET).split(req).events
    assert (event.kind, event.key) == ("command:/deploy", "slack:trigger:13345224609.738474920")


@pytest.mark.parametrize("retry", ["²", "٣", "1e3", "-1", "99999", "two"])
def test_a_retry_num_that_is_not_ascii_digits_is_dropped_not_a_crash(retry):
    # X-Slack-Retry-Num is unsigned: "²".isdigit() is True but int("²") raises, which was a 500
    body = sample_body("slack_event_callback.json")
    headers = slack_headers(body) | {"x-slack-retry-num": retry, "x-slack-retry-reason": "http_timeout"}
    (event,) = SlackAdapter(SLACK_SECRET).split(request("/webhooks/slack", body, headers)).events
    assert event.payload["_delivery"] == {"retry_num": None, "retry_reason": "http_timeout"}


def test_the_same_signed_json_with_a_form_content_type_is_the_same_event():
    body = sample_body("slack_event_callback.json")
    adapter = SlackAdapter(SLACK_SECRET)
    (as_json,) = adapter.split(request("/webhooks/slack", body, slack_headers(body))).events
    as_form = slack_headers(body, content_type="application/x-www-form-urlencoded")
    (replayed,) = adapter.split(request("/webhooks/slack", body, as_form)).events
    assert (replayed.key, replayed.kind) == (as_json.key, as_json.kind)
