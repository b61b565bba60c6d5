"""Signed deliveries for the generic adapters, made with the providers' own packages where one exists."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import standardwebhooks
import stripe
from slack_sdk.signature import Clock, SignatureVerifier

from tests.harness import TEST_SECRETS

EVENTS = Path(__file__).resolve().parent.parent / "events"
STANDARD_SECRET = json.loads(TEST_SECRETS["STANDARD_WEBHOOK_SECRETS"])["acme"]
STRIPE_SECRET = TEST_SECRETS["STRIPE_WEBHOOK_SECRET"]
GITHUB_SECRET = TEST_SECRETS["GITHUB_WEBHOOK_SECRET"]
SLACK_SECRET = TEST_SECRETS["SLACK_SIGNING_SECRET"]
UNIPILE_SECRET = TEST_SECRETS["UNIPILE_WEBHOOK_SECRET"]
JSON = {"content-type": "application/json"}


def sample(name: str) -> dict[str, Any]:
    """An API Gateway event from events/."""
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def sample_body(name: str) -> bytes:
    return str(sample(name)["body"]).encode()


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def standard_headers(
    body: bytes, msg_id: str, *, secret: str = STANDARD_SECRET, at: float | None = None, extra: str = ""
) -> dict[str, str]:
    """Signed by the standardwebhooks reference package; ``extra`` adds signatures (key rotation)."""
    stamp = int(time.time() if at is None else at)
    sig = standardwebhooks.Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, tz=UTC), body.decode())
    return {
        **JSON,
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": f"{extra} {sig}".strip(),
    }


def stripe_headers(body: bytes, *, secret: str = STRIPE_SECRET, at: float | None = None) -> dict[str, str]:
    """Signed by the stripe package's own test-header generator."""
    stamp = int(time.time() if at is None else at)
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=stamp)
    return {**JSON, "stripe-signature": header}


def stripe_docs_signature(body: bytes, secret: str, stamp: int) -> str:
    """Per Stripe's docs, computed by hand: hex HMAC-SHA256(secret, "{t}.{body}")."""
    return hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()


def github_signature(body: bytes, secret: str = GITHUB_SECRET) -> str:
    """Per GitHub's docs (no SDK signs): sha256= hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(body: bytes, delivery: str, event: str = "push", secret: str = GITHUB_SECRET) -> dict[str, str]:
    return {
        **JSON,
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-github-hook-id": "4242",
        "x-hub-signature-256": github_signature(body, secret),
        "user-agent": "GitHub-Hookshot/abc123",
    }


def slack_headers(
    body: bytes,
    *,
    secret: str = SLACK_SECRET,
    at: float | None = None,
    content_type: str = "application/json",
    retry: int | None = None,
) -> dict[str, str]:
    """Signed by slack_sdk's SignatureVerifier."""
    stamp = str(int(time.time() if at is None else at))
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    assert signature is not None
    headers = {"content-type": content_type, "x-slack-request-timestamp": stamp, "x-slack-signature": signature}
    if retry is not None:
        headers |= {"x-slack-retry-num": str(retry), "x-slack-retry-reason": "http_timeout"}
    return headers


def unipile_headers(secret: str = UNIPILE_SECRET, header: str = "X-Webhook-Secret") -> dict[str, str]:
    return {**JSON, header: secret}


def stripe_event(event_id: str, kind: str = "payment_intent.succeeded", object_id: str = "pi_1") -> bytes:
    body = json.loads(sample_body("stripe_event.json"))
    body["id"], body["type"], body["data"]["object"]["id"] = event_id, kind, object_id
    return json.dumps(body).encode()


def unipile_message(
    message_id: str, *, sender_id: str = "ACoAAProspect1", own_id: str = "ACoAAOwnUser", event: str = "message_received"
) -> bytes:
    body = json.loads(sample_body("unipile_message_received.json"))
    body["message_id"], body["event"] = message_id, event
    body["sender"]["attendee_provider_id"] = sender_id
    body["account_info"]["user_id"] = own_id
    return json.dumps(body).encode()


# provider -> (path, build a signed delivery for an id, the event_log key of that id)
Delivery = Callable[[str], tuple[bytes, dict[str, str]]]
KeyOf = Callable[[str], str]


def signed_standard(event_id: str) -> tuple[bytes, dict[str, str]]:
    body = sample_body("standard_webhook.json")
    return body, standard_headers(body, event_id)


def signed_stripe(event_id: str) -> tuple[bytes, dict[str, str]]:
    body = stripe_event(event_id)
    return body, stripe_headers(body)


def github_push(event_id: str) -> bytes:
    """A push whose ``after`` sha comes from ``event_id``: distinct pushes have distinct bodies, as on GitHub."""
    body = json.loads(sample_body("github_push.json"))
    body["after"] = hashlib.sha1(event_id.encode(), usedforsecurity=False).hexdigest()
    return json.dumps(body).encode()


def github_key(body: bytes) -> str:
    """GitHub events are keyed by the signed bytes (the delivery header is unsigned)."""
    return f"github:body:{hashlib.sha256(body).hexdigest()}"


def signed_github(event_id: str) -> tuple[bytes, dict[str, str]]:
    body = github_push(event_id)
    return body, github_headers(body, event_id, "push")


def signed_slack(event_id: str) -> tuple[bytes, dict[str, str]]:
    data = json.loads(sample_body("slack_event_callback.json"))
    data["event_id"] = event_id
    body = json.dumps(data).encode()
    return body, slack_headers(body)


PROVIDERS: dict[str, tuple[str, Delivery, KeyOf]] = {
    "standard": ("/webhooks/standard/acme", signed_standard, "standard:acme:{}".format),
    "stripe": ("/webhooks/stripe", signed_stripe, "stripe:{}".format),
    "github": ("/webhooks/github", signed_github, lambda event_id: github_key(github_push(event_id))),
    "slack": ("/webhooks/slack", signed_slack, "slack:{}".format),
}
