"""Hostile corpora for the signed providers: WhatsApp, Unipile, Standard Webhooks, Stripe, GitHub, Slack.

Each runs 50+ cases (tests/proofs/signed_corpus.py) against the provider's real ingest handler and, for what
was accepted, the real worker behind it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from tests import generic_support as g
from tests import whatsapp_support as wa
from tests.harness import TEST_SECRETS
from tests.proofs.hostile import Case, run_corpus
from tests.proofs.signed_corpus import Spec, corpus

pytestmark = pytest.mark.slow


def _whatsapp_body(event_id: str) -> dict[str, Any]:
    return wa.one_text(f"wamid.{event_id}", "hostile")


def _sample(name: str) -> dict[str, Any]:
    return json.loads(g.sample_body(name))


def _with(doc: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**doc, **fields}


# -- WhatsApp's GET handshake: ?hub.mode=subscribe&hub.verify_token=..&hub.challenge=.. -> 200 text/plain challenge
VERIFY_TOKEN = TEST_SECRETS["WHATSAPP_VERIFY_TOKEN"]


def _set_query(name: str, value: str) -> Callable[[dict[str, Any]], None]:
    """A decoded query value no URL produces on its own (a lone surrogate)."""

    def tweak(event: dict[str, Any]) -> None:
        event["queryStringParameters"] = {**(event["queryStringParameters"] or {}), name: value}

    return tweak


def _echoes(expected: str) -> Callable[[int, dict[str, str], bytes], bool]:
    return lambda status, headers, data: (
        headers.get("content-type", "").startswith("text/plain") and data.decode("utf-8") == expected
    )


def _json_error(code: str) -> Callable[[int, dict[str, str], bytes], bool]:
    return lambda status, headers, data: json.loads(data).get("error") == code


def whatsapp_handshake() -> list[Case]:
    """The GET handshake's query-string tricks. A repeated parameter arrives joined with commas, as API
    Gateway's payload 2.0 delivers it (devstack's apigw_event does the same)."""

    def q(mode: str | None = "subscribe", token: str | None = VERIFY_TOKEN, challenge: str | None = "1158201444"):
        parts = [("hub.mode", mode), ("hub.verify_token", token), ("hub.challenge", challenge)]
        return "&".join(f"{k}={quote(v, safe='')}" for k, v in parts if v is not None)

    def get(name: str, query: str, status: int, check: Any = None, body: bytes = b"", **kw: Any) -> Case:
        return Case(
            f"handshake: {name}", body, status, method="GET", query=query, check=check, queued_exactly=True, **kw
        )

    refused, bad_challenge = _json_error("verify_failed"), _json_error("invalid_challenge")
    return [
        get("as Meta sends it", q(), 200, _echoes("1158201444")),
        get("verify token wrong", q(token="wrong-token"), 403, refused),
        get("verify token one character short", q(token=VERIFY_TOKEN[:-1]), 403, refused),
        get("verify token with a trailing space", q(token=VERIFY_TOKEN + " "), 403, refused),
        get("verify token upper-cased", q(token=VERIFY_TOKEN.upper()), 403, refused),
        get("verify token empty", q(token=""), 403, refused),
        get("verify token missing", q(token=None), 403, refused),
        get("verify token repeated (joined with a comma)", q() + f"&hub.verify_token={VERIFY_TOKEN}", 403, refused),
        get("verify token wrong, then right", q(token="wrong") + f"&hub.verify_token={VERIFY_TOKEN}", 403, refused),
        get("hub.mode missing", q(mode=None), 403, refused),
        get("hub.mode unsubscribe", q(mode="unsubscribe"), 403, refused),
        get("hub.mode in capitals", q(mode="SUBSCRIBE"), 403, refused),
        get("hub.mode repeated", q() + "&hub.mode=subscribe", 403, refused),
        get("parameter names in capitals", q().replace("hub.", "HUB."), 403, refused),
        get("parameter names without the dot", q().replace("hub.", "hub_"), 403, refused),
        get("no query at all", "", 403, refused),
        get("challenge missing", q(challenge=None), 403, bad_challenge),
        get("challenge empty", q(challenge=""), 403, bad_challenge),
        get("challenge 1024 characters", q(challenge="7" * 1024), 200, _echoes("7" * 1024)),
        get("challenge 1025 characters", q(challenge="7" * 1025), 403, bad_challenge),
        get("challenge 100k characters", q(challenge="7" * 100_000), 403, bad_challenge),
        get("challenge unicode", q(challenge="\u2713\U0001f600\u202e"), 200, _echoes("\u2713\U0001f600\u202e")),
        get("challenge markup stays text/plain", q(challenge="<script>x</script>"), 200, _echoes("<script>x</script>")),
        get(
            "challenge CRLF stays in the body",
            q(challenge="1\r\nSet-Cookie: x=1"),
            200,
            lambda s, h, d: "set-cookie" not in {k.lower() for k in h} and d == b"1\r\nSet-Cookie: x=1",
        ),
        get("challenge repeated is echoed as one text", q(challenge="1") + "&hub.challenge=2", 200, _echoes("1,2")),
        get("challenge double-encoded is not decoded twice", q(challenge="%41"), 200, _echoes("%41")),
        get("challenge with NUL", q(challenge="1\x002"), 400, _json_error("invalid_parameter")),
        get("verify token with NUL", q(token=VERIFY_TOKEN + "\x00"), 400, _json_error("invalid_parameter")),
        get(
            "challenge lone surrogate",
            q(),
            400,
            _json_error("invalid_parameter"),
            tweak=_set_query("hub.challenge", "1\ud8002"),
        ),
        get("verify token in the body, not the query", q(token=None), 403, refused, body=b"hub.verify_token=x"),
        # a POST is a delivery whatever its query says: unsigned, it is refused and nothing is queued
        Case(
            "handshake query on an unsigned POST",
            wa.meta_bytes(wa.one_text("wamid.handshake-post")),
            401,
            headers={"content-type": "application/json"},
            query=q(),
            queued_exactly=True,
        ),
    ]


SPECS = [
    Spec(
        "whatsapp",
        wa.FUNCTION,
        "/webhooks/whatsapp",
        200,
        _whatsapp_body,
        lambda raw, eid, at: wa.headers_for(raw),
        "x-hub-signature-256",
        ("entry", 0, "changes", 0, "value", "messages", 0, "id"),
        max_body=3 * 1024 * 1024,
        extra=whatsapp_handshake,
    ),
    Spec(
        "unipile",
        "UnipileIngestFunction",
        "/webhooks/unipile",
        200,
        lambda eid: json.loads(g.unipile_message(eid)),
        lambda raw, eid, at: g.unipile_headers(),
        "x-webhook-secret",
        ("message_id",),
        signs_body=False,
    ),
    Spec(
        "standard",
        "GenericIngestFunction",
        "/webhooks/standard/acme",
        200,
        lambda eid: _with(_sample("standard_webhook.json"), hostile_id=eid),
        lambda raw, eid, at: g.standard_headers(raw, eid, at=at),
        "webhook-signature",
        None,
        timestamped=True,
    ),
    Spec(
        "stripe",
        "GenericIngestFunction",
        "/webhooks/stripe",
        200,
        lambda eid: json.loads(g.stripe_event(eid)),
        lambda raw, eid, at: g.stripe_headers(raw, at=at),
        "stripe-signature",
        ("id",),
        timestamped=True,
    ),
    Spec(
        "github",
        "GenericIngestFunction",
        "/webhooks/github",
        200,
        lambda eid: _with(_sample("github_push.json"), hostile_id=eid),
        lambda raw, eid, at: g.github_headers(raw, eid),
        "x-hub-signature-256",
        None,
    ),
    Spec(
        "slack",
        "GenericIngestFunction",
        "/webhooks/slack",
        200,
        lambda eid: _with(_sample("slack_event_callback.json"), event_id=eid),
        lambda raw, eid, at: g.slack_headers(raw, at=at),
        "x-slack-signature",
        ("event_id",),
        timestamped=True,
    ),
]


@pytest.mark.parametrize("spec", SPECS, ids=[s.provider for s in SPECS])
def test_signed_provider_hostile_corpus(stack, db, proof, spec):
    cases = corpus(spec)
    result = run_corpus(stack, db, spec.function, spec.path, cases)
    assert not result.failures, "\n".join(result.failures)
    assert len(cases) >= 50 and not any(s >= 500 for s in result.statuses)
    proof.record(
        kind="hostile",
        flow=spec.provider,
        name="hostile, forged, stale and broken deliveries"
        + (", the GET handshake and its query string" if spec.extra else ""),
        cases=result.cases,
        held=(
            f"{sum(n for s, n in result.statuses.items() if s >= 500)} x 5xx; "
            f"statuses {dict(sorted(result.statuses.items()))}; 0 unauthenticated queued; "
            f"{result.queued} authenticated events queued, {result.settled} settled, "
            f"{max(result.queued - result.settled, 0)} lost"
        ),
    )
