"""The generic adapters without any network, checked against the providers' own signers and verifiers.

Every signature here is made by the provider's package (standardwebhooks,
stripe, slack_sdk) or, for GitHub which has none, by hand per its docs and
cross-checked with the example GitHub publishes.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks
import stripe
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk.signature import SignatureVerifier

from devstack.lambda_runtime import apigw_event
from exactly_once.core.errors import ConfigurationError, UnauthorizedError
from exactly_once.core.events import QUARANTINE_KIND
from exactly_once.flows.generic.github import GitHubAdapter
from exactly_once.flows.generic.slack import SlackAdapter
from exactly_once.flows.generic.standard import StandardWebhooksAdapter, UnknownSourceError, parse_secrets
from exactly_once.flows.generic.stripe import StripeAdapter
from exactly_once.flows.unipile.adapter import UnipileAdapter
from exactly_once.ingest.adapters.signing import hmac_sha256
from exactly_once.ingest.apigw import Request
from tests.generic_support import (
    GITHUB_SECRET,
    SLACK_SECRET,
    STANDARD_SECRET,
    STRIPE_SECRET,
    UNIPILE_SECRET,
    FixedClock,
    github_headers,
    github_signature,
    sample_body,
    slack_headers,
    standard_headers,
    stripe_docs_signature,
    stripe_headers,
    unipile_headers,
)

NOW = 1_795_334_400
OTHER_STANDARD_SECRET = standardwebhooks.Webhook("whsec_" + "b3RoZXItc2VjcmV0LWZvci1yb3RhdGlvbg==")


def request(path: str, body: bytes, headers: dict[str, str]) -> Request:
    return Request.from_apigw_v2(apigw_event("POST", f"http://h{path}", body, headers))


def rejected(adapter, req: Request) -> str:
    with pytest.raises(UnauthorizedError) as info:
        adapter.authenticate(req)
    return info.value.code


# -- Standard Webhooks --------------------------------------------------------------------------


def standard() -> StandardWebhooksAdapter:
    return StandardWebhooksAdapter(parse_secrets({"acme": STANDARD_SECRET}))


def test_standard_accepts_what_the_reference_package_signs_and_keys_on_webhook_id():
    body = sample_body("standard_webhook.json")
    req = request("/webhooks/standard/acme", body, standard_headers(body, "msg_1"))
    adapter = standard()
    adapter.authenticate(req)
    (event,) = adapter.split(req).events
    assert (event.provider, event.key, event.kind) == ("standard", "standard:acme:msg_1", "invoice.paid")
    assert event.payload["body"] == json.loads(body)
    # The reference verifier agrees on the very same request.
    assert standardwebhooks.Webhook(STANDARD_SECRET).verify(body, dict(req.headers)) == json.loads(body)


def test_standard_key_rotation_one_valid_signature_among_several_is_enough():
    body = b'{"type":"ping"}'
    old = OTHER_STANDARD_SECRET.sign("msg_2", datetime.fromtimestamp(int(time.time()), tz=UTC), body.decode())
    headers = standard_headers(body, "msg_2", extra=f"v1a,ZWQyNTUxOQ== {old} v1,not-base64!")
    standard().authenticate(request("/webhooks/standard/acme", body, headers))
    # And the other way round: we hold two secrets (ours rotating), the sender signs with the old one.
    rotating = StandardWebhooksAdapter(
        parse_secrets({"acme": ["whsec_" + "bmV3LXNlY3JldC1hZnRlci1yb3RhdGlvbg==", STANDARD_SECRET]})
    )
    rotating.authenticate(request("/webhooks/standard/acme", body, standard_headers(body, "msg_2")))


def test_standard_reads_svix_prefixed_headers_as_svix_sends_them():
    body = sample_body("standard_webhook.json")
    headers = {k.replace("webhook-", "svix-"): v for k, v in standard_headers(body, "msg_svix").items()}
    req = request("/webhooks/standard/acme", body, headers)
    standard().authenticate(req)
    assert standard().split(req).events[0].key == "standard:acme:msg_svix"


def test_standard_only_foreign_signatures_is_401():
    body = b'{"type":"ping"}'
    forged = OTHER_STANDARD_SECRET.sign("msg_3", datetime.fromtimestamp(int(time.time()), tz=UTC), body.decode())
    headers = standard_headers(body, "msg_3") | {"webhook-signature": forged}
    assert rejected(standard(), request("/webhooks/standard/acme", body, headers)) == "invalid_signature"


def test_standard_tampered_body_is_401_for_us_and_the_reference():
    body = b'{"type":"ping","amount":1}'
    headers = standard_headers(body, "msg_4")
    tampered = b'{"type":"ping","amount":9}'
    assert rejected(standard(), request("/webhooks/standard/acme", tampered, headers)) == "invalid_signature"
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(STANDARD_SECRET).verify(tampered, headers)


@pytest.mark.parametrize(
    ("offset", "code"),
    [(299, None), (-299, None), (301, "stale_timestamp"), (-301, "future_timestamp")],
)
def test_standard_five_minute_tolerance_both_ways_as_the_reference(offset, code):
    body = b'{"type":"ping"}'
    headers = standard_headers(body, "msg_5", at=NOW)
    req = request("/webhooks/standard/acme", body, headers)
    with time_machine.travel(NOW + offset, tick=False):
        reference_ok = _reference_accepts(body, headers)
        if code is None:
            standard().authenticate(req)
        else:
            assert rejected(standard(), req) == code
    assert reference_ok is (code is None)


def _reference_accepts(body: bytes, headers: dict[str, str]) -> bool:
    try:
        standardwebhooks.Webhook(STANDARD_SECRET).verify(body, headers, json_parse=False)
    except standardwebhooks.WebhookVerificationError:
        return False
    return True


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=200).map(lambda b: b.decode("latin-1").encode()),
    msg_id=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=40),
    flip=st.booleans(),
)
def test_standard_agrees_with_the_reference_on_random_deliveries(body, msg_id, flip):
    headers = standard_headers(body, msg_id)
    sent = body + b"x" if flip else body
    ours = True
    try:
        standard().authenticate(request("/webhooks/standard/acme", sent, headers))
    except UnauthorizedError:
        ours = False
    assert ours is _reference_accepts(sent, headers)
    assert ours is not flip


def test_standard_unknown_source_is_404_and_missing_headers_401():
    body = b'{"type":"ping"}'
    with pytest.raises(UnknownSourceError):
        standard().authenticate(request("/webhooks/standard/other", body, standard_headers(body, "m")))
    assert rejected(standard(), request("/webhooks/standard/acme", body, {"content-type": "application/json"})) == (
        "missing_signature"
    )


@pytest.mark.parametrize(
    "document",
    ["", "not json", "[]", "{}", '{"acme": "whsec_!!!"}', '{"acme": "whsec_c2hvcnQ="}', '{"bad source!": "whsec_x"}'],
)
def test_standard_bad_secret_documents_fail_at_init(document):
    with pytest.raises(ConfigurationError):
        parse_secrets(document)


def test_standard_authenticated_but_unreadable_body_goes_to_quarantine_under_its_webhook_id():
    body = b"not json at all"
    req = request("/webhooks/standard/acme", body, standard_headers(body, "msg_q"))
    standard().authenticate(req)
    (event,) = standard().split(req).events
    assert (event.kind, event.key, event.payload["raw"]) == (QUARANTINE_KIND, "standard:acme:msg_q", "not json at all")


# -- Stripe -----------------------------------------------------------------------------------


def test_stripe_accepts_the_header_the_stripe_package_generates():
    body = sample_body("stripe_event.json")
    req = request("/webhooks/stripe", body, stripe_headers(body))
    adapter = StripeAdapter([STRIPE_SECRET])
    adapter.authenticate(req)
    (event,) = adapter.split(req).events
    assert (event.key, event.kind, event.group) == (
        "stripe:evt_1SampleEvent000001",
        "payment_intent.succeeded",
        "stripe:pi_3SamplePayment01",
    )


def test_stripe_header_computed_per_docs_is_accepted_by_stripe_construct_event_and_by_us():
    body = sample_body("stripe_event.json")
    stamp = int(time.time())
    header = f"t={stamp},v1={stripe_docs_signature(body, STRIPE_SECRET, stamp)}"
    event = stripe.Webhook.construct_event(body.decode(), header, STRIPE_SECRET, tolerance=300)
    assert event["id"] == "evt_1SampleEvent000001"
    StripeAdapter([STRIPE_SECRET]).authenticate(request("/webhooks/stripe", body, {"stripe-signature": header}))


def test_stripe_several_v1_one_valid_passes_here_and_in_the_sdk():
    body = sample_body("stripe_event.json")
    stamp = int(time.time())
    stale_secret = stripe_docs_signature(body, "whsec_rolled_away", stamp)
    test_mode = "v0=" + "6f" * 32
    good = stripe_docs_signature(body, STRIPE_SECRET, stamp)
    header = f"t={stamp},v1={stale_secret},{test_mode},v1={good}"
    stripe.WebhookSignature.verify_header(body.decode(), header, STRIPE_SECRET, tolerance=300)
    StripeAdapter([STRIPE_SECRET]).authenticate(request("/webhooks/stripe", body, {"stripe-signature": header}))
    only_wrong = f"t={stamp},v1={stale_secret}"
    adapter = StripeAdapter([STRIPE_SECRET])
    assert rejected(adapter, request("/webhooks/stripe", body, {"stripe-signature": only_wrong})) == (
        "invalid_signature"
    )


def test_stripe_our_secret_rotation_accepts_either_endpoint_secret():
    body = sample_body("stripe_event.json")
    adapter = StripeAdapter(["whsec_new_secret_value", STRIPE_SECRET])
    adapter.authenticate(request("/webhooks/stripe", body, stripe_headers(body)))


@pytest.mark.parametrize(
    ("offset", "code", "sdk_ok"),
    [
        (299, None, True),
        (301, "stale_timestamp", False),
        (-299, None, True),
        # The SDK only refuses the past; a signature dated 5 minutes ahead is refused here as well.
        (-301, "future_timestamp", True),
    ],
)
def test_stripe_300_second_tolerance(offset, code, sdk_ok):
    body = sample_body("stripe_event.json")
    headers = stripe_headers(body, at=NOW)
    req = request("/webhooks/stripe", body, headers)
    with time_machine.travel(NOW + offset, tick=False):
        try:
            stripe.WebhookSignature.verify_header(body.decode(), headers["stripe-signature"], STRIPE_SECRET, 300)
            sdk = True
        except stripe.SignatureVerificationError:
            sdk = False
        if code is None:
            StripeAdapter([STRIPE_SECRET]).authenticate(req)
        else:
            assert rejected(StripeAdapter([STRIPE_SECRET]), req) == code
    assert sdk is sdk_ok


@pytest.mark.parametrize(
    "header",
    ["", "v1=abc", "t=1795334400", "t=abc,v1=00", "t=1,t=2,v1=00", "v0=00,t=1795334400"],
)
def test_stripe_malformed_headers_are_401(header):
    body = b"{}"
    headers = {"stripe-signature": header} if header else {}
    with time_machine.travel(NOW, tick=False):
        assert rejected(StripeAdapter([STRIPE_SECRET]), request("/webhooks/stripe", body, headers)) in {
            "missing_signature",
            "invalid_signature",
            "invalid_timestamp",
        }


def test_stripe_needs_a_secret():
    with pytest.raises(ConfigurationError):
        StripeAdapter([""])


# -- GitHub -----------------------------------------------------------------------------------


def test_github_published_example_matches():
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries (test values).
    secret, payload = "It's a Secret to Everybody", b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert "sha256=" + hmac_sha256(secret, payload).hex() == expected
    assert github_signature(payload, secret) == expected
    headers = {"x-hub-signature-256": expected, "x-github-delivery": "d-1", "x-github-event": "ping"}
    GitHubAdapter(secret).authenticate(request("/webhooks/github", payload, headers))


def test_github_push_keyed_by_delivery_grouped_by_repository():
    body = sample_body("github_push.json")
    req = request("/webhooks/github", body, github_headers(body, "deliv-1", "push"))
    adapter = GitHubAdapter(GITHUB_SECRET)
    adapter.authenticate(req)
    (event,) = adapter.split(req).events
    assert (event.key, event.kind, event.group) == ("github:deliv-1", "push", "github:octo-org/octo-repo")
    assert event.payload["body"]["ref"] == "refs/heads/main"


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


# -- Slack ------------------------------------------------------------------------------------


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


# -- Unipile ----------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["", "short"])
def test_unipile_refuses_to_start_without_a_real_secret(secret):
    with pytest.raises(ConfigurationError):
        UnipileAdapter(secret)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"content-type": "application/json"}, "missing_secret"),
        (unipile_headers("unipile-webhook-secret-wrong"), "invalid_secret"),
        (unipile_headers(UNIPILE_SECRET, header="X-Other-Header"), "missing_secret"),
    ],
)
def test_unipile_missing_or_wrong_secret_is_401(headers, code):
    body = sample_body("unipile_message_received.json")
    assert rejected(UnipileAdapter(UNIPILE_SECRET), request("/webhooks/unipile", body, headers)) == code


def test_unipile_header_name_is_configurable_and_events_keyed_by_event_and_message_id():
    body = sample_body("unipile_message_received.json")
    adapter = UnipileAdapter(UNIPILE_SECRET, header="X-Unipile-Auth")
    req = request("/webhooks/unipile", body, unipile_headers(header="X-Unipile-Auth"))
    adapter.authenticate(req)
    (event,) = adapter.split(req).events
    assert event.key == "unipile:dfXlh46vQYCsMbVarumWlg:message_received:ykmhfXlRW0W_cqReJYrfBw"
    assert (event.kind, event.group) == ("message_received", "unipile:chat:R8J-xM9WX7eoHLp6gSVtWQ")


def test_unipile_account_status_without_message_id_is_keyed_by_its_body():
    body = json.dumps({"AccountStatus": {"account_id": "acc1", "account_type": "LINKEDIN", "message": "OK"}}).encode()
    (event,) = UnipileAdapter(UNIPILE_SECRET).split(request("/webhooks/unipile", body, unipile_headers())).events
    assert event.kind == "account_status"
    assert event.key.startswith("unipile:acc1:account_status:body:")
