"""The Standard Webhooks adapter without any network, checked against the reference package (standardwebhooks)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st

from exactly_once.core.errors import ConfigurationError, UnauthorizedError
from exactly_once.core.events import QUARANTINE_KIND
from exactly_once.flows.generic.standard import StandardWebhooksAdapter, parse_secrets
from tests.generic_support import STANDARD_SECRET, sample_body, standard_headers
from tests.unit.flows.support import NOW, rejected, request

OTHER_STANDARD_SECRET = standardwebhooks.Webhook("whsec_" + "b3RoZXItc2VjcmV0LWZvci1yb3RhdGlvbg==")


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


def test_standard_unknown_source_answers_like_a_bad_signature_so_configured_names_do_not_leak():
    # GIVEN a delivery signed with acme's key, sent to a source nobody configured, and one with a wrong key to acme
    body = b'{"type":"ping"}'
    forged = {**standard_headers(body, "m"), "webhook-signature": "v1," + "A" * 44}
    unknown = rejected(standard(), request("/webhooks/standard/other", body, standard_headers(body, "m")))
    bad_name = rejected(standard(), request("/webhooks/standard/no%20such!", body, standard_headers(body, "m")))
    known = rejected(standard(), request("/webhooks/standard/acme", body, forged))
    # THEN all three are the same 401 (issue 16: a 404 told who is configured)
    assert unknown == bad_name == known == "invalid_signature"
    assert rejected(standard(), request("/webhooks/standard/other", body, {"content-type": "application/json"})) == (
        rejected(standard(), request("/webhooks/standard/acme", body, {"content-type": "application/json"}))
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
