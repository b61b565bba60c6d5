"""The Stripe adapter without any network, checked against the stripe package's signer and verifier."""

from __future__ import annotations

import time

import pytest
import stripe
import time_machine

from exactly_once.core.errors import ConfigurationError
from exactly_once.flows.generic.stripe import StripeAdapter
from tests.generic_support import STRIPE_SECRET, sample_body, stripe_docs_signature, stripe_headers
from tests.unit.flows.support import NOW, rejected, request


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
