"""Forwarding settled events (sends/forward.py): the signature, the endpoint rules, what is queued (unit)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import standardwebhooks

from devstack.fake_forward import why_refused
from exactly_once.core.errors import ConfigurationError, ProviderCallError
from exactly_once.core.events import InboundEvent, unreadable_event
from exactly_once.sends import forward, pacing
from exactly_once.sends.channels import DEFAULT_RATE_LIMIT_WAIT, Unknowable, sender
from exactly_once.sends.queue import SendClaim
from exactly_once.sends.request import SendRequest

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def event(key: str = "acme:msg_1", group: str = "acme:customer_1", **payload: object) -> InboundEvent:
    return InboundEvent(
        provider="acme", key=key, group=group, kind="invoice.paid", payload=payload or {"n": 1}, received_at=1.5e9
    )


def claim_of(request: SendRequest) -> SendClaim:
    return SendClaim(1, "t", request.channel, request.sender_account, request.recipient, request.payload,
                     request.policy or "", 1, 5, datetime.now(UTC))  # fmt: skip


def test_a_delivery_verifies_with_the_standard_webhooks_reference_package():
    # GIVEN an event's body signed as the sender signs it
    body = json.dumps(forward.body_of(event()), separators=(",", ":")).encode()
    headers = forward.signed_headers(forward.signing_key(SECRET), "acme:msg_1", body)
    # THEN the reference verifier takes it and reads the same body; the fake receiver agrees
    assert standardwebhooks.Webhook(SECRET).verify(body, headers) == json.loads(body)
    assert why_refused(headers, body, SECRET, float(headers["webhook-timestamp"])) is None
    # AND a changed body, another secret or an old timestamp is refused by both
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(body + b" ", headers)
    assert why_refused(headers, body + b" ", SECRET, float(headers["webhook-timestamp"])) is not None
    assert why_refused(headers, body, "whsec_" + "A" * 32, float(headers["webhook-timestamp"])) is not None
    assert why_refused(headers, body, SECRET, float(headers["webhook-timestamp"]) + 301) is not None


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_c2hvcnQ=", ""])
def test_a_secret_that_is_not_whsec_base64_of_16_bytes_is_a_configuration_error(secret):
    with pytest.raises(ConfigurationError):
        forward.signing_key(secret)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://receiver.example.com/hooks", True),
        ("http://127.0.0.1:8080/forward/x", True),
        ("http://localhost/forward", True),
        ("http://receiver.example.com/hooks", False),  # no plain http beyond this machine
        ("ftp://receiver.example.com/", False),
        ("receiver.example.com/hooks", False),
    ],
)
def test_the_endpoint_is_https_or_loopback(url, ok):
    if ok:
        assert forward.check_url(url) == url
    else:
        with pytest.raises(ConfigurationError):
            forward.check_url(url)


def test_forwarding_is_off_without_a_url_and_filters_by_provider(monkeypatch):
    monkeypatch.delenv("FORWARD_URL", raising=False)
    assert forward.ForwardConfig.from_env() is None
    monkeypatch.setenv("FORWARD_URL", "https://receiver.example.com/hooks")
    monkeypatch.setenv("FORWARD_PROVIDERS", "acme, stripe")
    config = forward.ForwardConfig.from_env()
    assert config is not None and config.providers == {"acme", "stripe"}
    assert config.forwards(event(), "recorded") and config.forwards(event(), "duplicate:recorded")
    assert not config.forwards(event(), "quarantined")  # not settled: kept for a person, not forwarded
    assert not config.forwards(unreadable_event("acme", b"x", "bad"), "quarantined")
    other = InboundEvent(provider="github", key="k", group="g", kind="push", payload={})
    assert not config.forwards(other, "recorded")


def test_every_copy_of_an_event_queues_the_same_send():
    # GIVEN the same event settled twice (a re-delivery, a duplicate)
    first, again = forward.request_for(event()), forward.request_for(event())
    # THEN the same key and payload: the second enqueue finds the first send
    assert first.idempotency_key == "forward:acme:msg_1" and first.payload_hash == again.payload_hash
    assert first.policy == "at_least_once" and first.channel == "forward"
    first.validate()
    body = first.payload
    assert body["type"] == "acme.invoice.paid" and body["timestamp"] == "2017-07-14T02:40:00Z"
    assert body["data"] == {"provider": "acme", "kind": "invoice.paid", "key": "acme:msg_1",
                            "group": "acme:customer_1", "payload": {"n": 1}}  # fmt: skip


def test_one_entity_keeps_one_sender_account_and_entities_spread_over_the_shards():
    accounts = {forward.request_for(event(key=f"k{i}", group=f"customer_{i}")).sender_account for i in range(200)}
    assert len(accounts) == forward.SHARDS and all(a.startswith("acme:") for a in accounts)
    same = {forward.request_for(event(key=f"k{i}", group="customer_1")).sender_account for i in range(20)}
    assert len(same) == 1


def test_a_key_a_header_cannot_carry_becomes_its_hash():
    assert forward.webhook_id("graph:abc=") == "graph:abc="
    for key in ("has space", "é", "x" * 300, "nul\x00"):
        hashed = forward.webhook_id(key)
        assert hashed.startswith("sha256:") and len(hashed) == 71 and hashed == forward.webhook_id(key)
    forward.request_for(event(key="nul\x00 and é")).validate()


def test_the_sender_needs_no_endpoint_to_be_built_and_cannot_find_a_delivery(monkeypatch):
    # The reconciler builds every channel's sender: forwarding's needs neither the URL nor the secret.
    monkeypatch.delenv("FORWARD_URL", raising=False)
    monkeypatch.delenv("FORWARD_SIGNING_SECRET", raising=False)
    sender.cache_clear()
    built = sender("forward")
    assert isinstance(built, forward.ForwardSender)
    assert isinstance(built.find(claim_of(forward.request_for(event()))), Unknowable)
    assert built.rate_limit(ProviderCallError(429, "", retry_after=3.0)) == 3.0
    assert built.rate_limit(ProviderCallError(429, "")) == DEFAULT_RATE_LIMIT_WAIT
    assert built.rate_limit(ProviderCallError(503, "")) is None
    with pytest.raises(ConfigurationError):
        built.send(claim_of(forward.request_for(event())))  # no endpoint: nothing leaves
    sender.cache_clear()


def test_forwards_are_not_paced_and_the_legacy_caps_leave_them_alone(monkeypatch):
    monkeypatch.setenv("SEND_DAILY_CAP", "10")
    monkeypatch.setenv("SEND_MIN_SPACING_MS", "5000")
    rule = pacing.defaults("forward")
    assert rule.daily_cap >= 1_000_000 and rule.min_spacing_seconds == 0 and rule.work_start is None
    assert rule.weekly_cap is None and rule.max_spacing_seconds is None
