"""Unipile, Standard Webhooks, Stripe, GitHub, Slack: hostile and broken deliveries against the real handlers.

Unauthenticated requests get a 401/404/413/415 JSON error and queue nothing; authenticated bodies nobody
can read are answered 2xx and settled in quarantine (Stripe and Slack turn off endpoints that keep failing).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.generic_support import (
    STRIPE_SECRET,
    github_headers,
    github_push,
    sample_body,
    slack_headers,
    standard_headers,
    stripe_docs_signature,
    stripe_headers,
    unipile_headers,
    unipile_message,
)
from tests.proofs.hostile import Case, run_corpus

pytestmark = pytest.mark.slow

JSON = {"content-type": "application/json"}
MAX_BODY = 1_048_576


def _deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _bad_base64(event: dict[str, Any]) -> None:
    event["body"], event["isBase64Encoded"] = "***not base64***", True


def _unipile() -> list[Case]:
    ok = unipile_headers()
    msg = unipile_message("hostile-1")
    return [
        Case("no secret header", msg, 401, JSON),
        Case("wrong secret", msg, 401, unipile_headers("unipile-webhook-secret-wrong")),
        Case("empty secret", msg, 401, unipile_headers("")),
        Case("secret with a trailing space", msg, 401, unipile_headers(ok["X-Webhook-Secret"] + " ")),
        Case("secret as a prefix", msg, 401, unipile_headers(ok["X-Webhook-Secret"][:-1])),
        Case("secret in another header", msg, 401, {**JSON, "authorization": ok["X-Webhook-Secret"]}),
        Case("text/plain", msg, 415, {**ok, "content-type": "text/plain"}),
        Case("no content type, authenticated", msg, 200, {"X-Webhook-Secret": ok["X-Webhook-Secret"]}, queued=1),
        Case("form content type", msg, 415, {**ok, "content-type": "application/x-www-form-urlencoded"}),
        Case("too large", b"{" + b" " * MAX_BODY + b"}", 413, ok),
        Case("bad base64 body", b"", 400, ok, tweak=_bad_base64),
        Case("authenticated, not JSON", b"not json", 200, ok, queued=1),
        Case("authenticated, a JSON array", b"[1,2,3]", 200, ok, queued=1),
        Case("authenticated, not UTF-8", b"\xff\xfe{}", 200, ok, queued=1),
        Case("authenticated, nested 100000 deep", _deep(100_000), 200, ok, queued=1),
        Case("authenticated, no message_id", json.dumps({"event": "message_read"}).encode(), 200, ok, queued=1),
        Case(
            "authenticated, ids of the wrong type",
            json.dumps({"event": 7, "message_id": [1]}).encode(),
            200,
            ok,
            queued=1,
        ),
        Case(
            "authenticated, message_received without sender",
            b'{"event":"message_received","message_id":"m"}',
            200,
            ok,
            queued=1,
        ),
        # the message "no content type, authenticated" already queued: acknowledged again, not queued again
        Case("authenticated, a real message", msg, 200, ok, queued=0),
    ]


def _standard() -> list[Case]:
    body = sample_body("standard_webhook.json")
    good = standard_headers(body, "msg_h1")
    return [
        Case("standard: no headers", body, 401, JSON),
        Case("standard: empty signature", body, 401, good | {"webhook-signature": "v1,"}),
        Case("standard: signature not base64", body, 401, good | {"webhook-signature": "v1,!!!"}),
        Case(
            "standard: only v1a",
            body,
            401,
            good | {"webhook-signature": good["webhook-signature"].replace("v1,", "v1a,")},
        ),
        Case("standard: 1000 signatures", body, 401, good | {"webhook-signature": " ".join(["v1,AAAA"] * 1000)}),
        Case("standard: float timestamp", body, 401, good | {"webhook-timestamp": f"{int(time.time())}.5"}),
        Case("standard: negative timestamp", body, 401, good | {"webhook-timestamp": "-5"}),
        Case("standard: 40-digit timestamp", body, 401, good | {"webhook-timestamp": "9" * 40}),
        Case("standard: other id than signed", body, 401, good | {"webhook-id": "msg_other"}),
        Case("standard: webhook-id of 5000 chars", body, 401, standard_headers(body, "x" * 5000)),
        Case("standard: body changed", body + b" ", 401, good),
        Case("standard: authenticated, not JSON", b"nope", 200, standard_headers(b"nope", "msg_h2"), queued=1),
        Case("standard: authenticated, signed", body, 200, good, queued=1),
    ]


def _standard_unknown_sources() -> list[Case]:
    body = sample_body("standard_webhook.json")
    error = _answer_error("invalid_signature")
    return [
        # 401 exactly as a wrong signature: a 404 told a scanner which source names are configured (issue 16)
        Case("standard: unknown source", body, 401, standard_headers(body, "m"), check=error),
        Case("standard: unknown source, no signature", body, 401, {"content-type": "application/json"}),
    ]


def _answer_error(code: str) -> Any:
    return lambda status, headers, data: json.loads(data).get("error") == code


def _stripe() -> list[Case]:
    body = sample_body("stripe_event.json")
    now = int(time.time())
    sig = stripe_docs_signature(body, STRIPE_SECRET, now)

    def header(value: str) -> dict[str, str]:
        return {**JSON, "stripe-signature": value}

    no_id = b'{"object":"event","type":"x"}'
    return [
        Case("stripe: no header", body, 401, JSON),
        Case("stripe: garbage header", body, 401, header("garbage")),
        Case("stripe: t not a number", body, 401, header(f"t=abc,v1={sig}")),
        Case("stripe: two t", body, 401, header(f"t={now},t={now},v1={sig}")),
        Case("stripe: v1 not hex", body, 401, header(f"t={now},v1=zz")),
        Case("stripe: only v0", body, 401, header(f"t={now},v0={sig}")),
        Case("stripe: 2000 v1", body, 401, header(f"t={now}," + ",".join(["v1=00"] * 2000))),
        Case("stripe: signed 10 minutes ago", body, 401, stripe_headers(body, at=now - 600)),
        Case("stripe: signed 10 minutes ahead", body, 401, stripe_headers(body, at=now + 600)),
        Case("stripe: wrong secret", body, 401, stripe_headers(body, secret="whsec_nope")),
        Case(
            "stripe: form content type",
            body,
            415,
            stripe_headers(body) | {"content-type": "application/x-www-form-urlencoded"},
        ),
        Case("stripe: authenticated, no id", no_id, 200, stripe_headers(no_id), queued=1),
        Case("stripe: authenticated, event", body, 200, stripe_headers(body), queued=1),
    ]


def _github() -> list[Case]:
    body = sample_body("github_push.json")
    other = github_push("hostile-no-delivery")
    good = github_headers(body, "hostile-d1")
    form = b"zen=no+payload+field"
    return [
        Case("github: no signature", body, 401, {k: v for k, v in good.items() if k != "x-hub-signature-256"}),
        Case(
            "github: sha1 only",
            body,
            401,
            {k: v for k, v in good.items() if k != "x-hub-signature-256"} | {"x-hub-signature": "sha1=00"},
        ),
        Case(
            "github: signature without prefix",
            body,
            401,
            good | {"x-hub-signature-256": good["x-hub-signature-256"][7:]},
        ),
        Case(
            "github: truncated signature", body, 401, good | {"x-hub-signature-256": good["x-hub-signature-256"][:-2]}
        ),
        Case("github: body changed", body + b"\n", 401, good),
        Case(
            "github: authenticated, no delivery id",
            other,
            200,
            {k: v for k, v in github_headers(other, "unused").items() if k != "x-github-delivery"},
            queued=1,
        ),
        Case(
            "github: authenticated form without payload",
            form,
            200,
            github_headers(form, "hostile-d2") | {"content-type": "application/x-www-form-urlencoded"},
            queued=1,
        ),
        Case("github: authenticated push", body, 200, good, queued=1),
        # The unsigned headers of a captured delivery, changed: the signed bytes key the event, so each is
        # the same event again (a duplicate), never a new one (one body used to become four events).
        Case("github: captured push, fresh delivery id", body, 200, github_headers(body, "hostile-d3"), queued=0),
        Case(
            "github: captured push, another event name",
            body,
            200,
            github_headers(body, "hostile-d4", "release"),
            queued=0,
        ),
        Case(
            "github: captured push, sent as a form",
            body,
            200,
            github_headers(body, "hostile-d5") | {"content-type": "application/x-www-form-urlencoded"},
            queued=0,
        ),
    ]


def _slack() -> list[Case]:
    body = sample_body("slack_event_callback.json")
    challenge = sample_body("slack_url_verification.json")
    ssl = b"ssl_check=1&token=abc"
    form = "application/x-www-form-urlencoded"
    unicode_retry = json.dumps({**json.loads(body), "event_id": "EvUnicodeRetry"}).encode()
    return [
        Case("slack: unsigned challenge", challenge, 401, JSON),
        Case("slack: challenge signed with another secret", challenge, 401, slack_headers(challenge, secret="other")),
        Case("slack: stale challenge", challenge, 401, slack_headers(challenge, at=time.time() - 400)),
        Case(
            "slack: signed challenge", challenge, 200, slack_headers(challenge), check=lambda s, h, b: b"challenge" in b
        ),
        Case("slack: signed ssl_check", ssl, 200, slack_headers(ssl, content_type=form)),
        Case("slack: no signature", body, 401, JSON),
        Case("slack: v1 signature", body, 401, slack_headers(body) | {"x-slack-signature": "v1=" + "0" * 64}),
        Case(
            "slack: no timestamp",
            body,
            401,
            {k: v for k, v in slack_headers(body).items() if k != "x-slack-request-timestamp"},
        ),
        Case("slack: future by an hour", body, 401, slack_headers(body, at=time.time() + 3600)),
        Case("slack: authenticated, not JSON", b"{{", 200, slack_headers(b"{{"), queued=1),
        Case(
            "slack: authenticated form, payload not JSON",
            b"payload=%7B",
            200,
            slack_headers(b"payload=%7B", content_type=form),
            queued=1,
        ),
        Case(
            "slack: authenticated retry with an odd number",
            body,
            200,
            slack_headers(body) | {"x-slack-retry-num": "x"},
            queued=1,
        ),
        Case(
            "slack: the same signed JSON, sent as a form",
            body,
            200,
            slack_headers(body, content_type=form),
            queued=0,
        ),
        Case(
            "slack: retry number in Unicode digits",
            unicode_retry,
            200,
            slack_headers(unicode_retry) | {"x-slack-retry-num": "²"},
            queued=1,
        ),
    ]


CORPORA = {
    "unipile": ("UnipileIngestFunction", {"/webhooks/unipile": _unipile}),
    "standard": (
        "GenericIngestFunction",
        {"/webhooks/standard/acme": _standard, "/webhooks/standard/nobody": _standard_unknown_sources},
    ),
    "stripe": ("GenericIngestFunction", {"/webhooks/stripe": _stripe}),
    "github": ("GenericIngestFunction", {"/webhooks/github": _github}),
    "slack": ("GenericIngestFunction", {"/webhooks/slack": _slack}),
}


@pytest.mark.parametrize("flow", sorted(CORPORA))
def test_hostile_corpus(stack, db, proof, flow):
    function, routes = CORPORA[flow]
    failures: list[str] = []
    statuses: dict[int, int] = {}
    cases = queued = settled = 0
    for route, corpus in routes.items():
        result = run_corpus(stack, db, function, route, corpus())
        failures += result.failures
        cases, queued, settled = cases + result.cases, queued + result.queued, settled + result.settled
        for status, n in result.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    assert not failures, "\n".join(failures)
    assert not any(status >= 500 for status in statuses)
    assert settled >= queued
    proof.record(
        kind="hostile",
        flow=flow,
        name="hostile and broken deliveries",
        cases=cases,
        held=f"{sum(n for s, n in statuses.items() if s >= 500)} x 5xx; statuses {dict(sorted(statuses.items()))}; "
        f"{queued} authenticated events queued, {settled} settled, {max(queued - settled, 0)} lost",
    )
