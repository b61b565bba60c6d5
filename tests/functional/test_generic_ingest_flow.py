"""Standard Webhooks, Stripe, GitHub, Slack end to end: the real handlers, serialised moto, Postgres.

Each delivery is signed by the provider's own package (GitHub: per its docs),
posted to GenericIngestFunction, drained through the event worker, and must
end as exactly one event_log row however often it is delivered.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import pytest
import time_machine

from devstack.routes import http_routes
from devstack.template import Template
from tests.generic_support import (
    PROVIDERS,
    github_headers,
    sample_body,
    signed_github,
    signed_stripe,
    slack_headers,
    standard_headers,
    stripe_event,
    stripe_headers,
)
from tests.harness import HttpAnswer, Stack

FUNCTION = "GenericIngestFunction"


def post(stack: Stack, path: str, body: bytes, headers: dict[str, str]) -> HttpAnswer:
    return stack.invoke_http(FUNCTION, "POST", f"http://127.0.0.1:3000{path}", body, headers)


def counts(answer: HttpAnswer) -> dict[str, int]:
    """The ingest counts: the JSON body, or Slack's header (Slack gets an empty 200)."""
    if "x-exactly-once" in answer.headers:
        return {k: int(v) for k, v in (p.split("=") for p in answer.headers["x-exactly-once"].split(";"))}
    return answer.json()


def after_the_window(provider: str):
    """Travel past the provider's ingest dedup window (DynamoDB record and warm cache both expire)."""
    window = int(Template.load().function_env(FUNCTION)[f"{provider.upper()}_DEDUP_WINDOW_SECONDS"])
    return time_machine.travel(time.time() + window + 60, tick=True)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_delivery_and_its_retry_are_recorded_once(stack, db, provider):
    path, deliver, key = PROVIDERS[provider]
    event_id = f"id-{uuid.uuid4().hex[:8]}"
    # GIVEN a signed delivery WHEN the provider sends it, then retries it
    first = post(stack, path, *deliver(event_id))
    again = post(stack, path, *deliver(event_id))
    stack.drain()
    # THEN ingest accepted one and stopped the retry
    assert first.status == 200
    assert counts(first) == {"accepted": 1, "duplicates": 0, "rejected": 0}
    assert counts(again) == {"accepted": 0, "duplicates": 1, "rejected": 0}
    # AND the event log holds exactly one row for it
    rows = db.execute("SELECT provider, event_key, outcome, deliveries FROM event_log").fetchall()
    assert rows == [(provider, key(event_id), "recorded", 1)]


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_redelivery_after_the_ingest_window_is_still_recorded_once(stack, db, provider):
    path, deliver, key = PROVIDERS[provider]
    event_id = f"late-{uuid.uuid4().hex[:8]}"
    post(stack, path, *deliver(event_id))
    stack.drain()
    # GIVEN the ingest window has passed WHEN the provider redelivers (a manual GitHub redelivery, say)
    with after_the_window(provider):
        late = post(stack, path, *deliver(event_id))
        stack.drain()
    # THEN ingest let it through, and Postgres counted it instead of recording it again
    assert counts(late)["accepted"] == 1
    rows = db.execute("SELECT event_key, outcome, deliveries FROM event_log").fetchall()
    assert rows == [(key(event_id), "recorded", 2)]


def test_distinct_events_of_one_delivery_stream_are_each_recorded(stack, db):
    for n in range(3):
        post(stack, "/webhooks/stripe", *signed_stripe(f"evt_{n}"))
    stack.drain()
    assert sorted(r[0] for r in db.execute("SELECT event_key FROM event_log")) == [
        "stripe:evt_0",
        "stripe:evt_1",
        "stripe:evt_2",
    ]


@pytest.mark.parametrize(
    ("provider", "spoil"),
    [
        ("standard", lambda h: {k: v for k, v in h.items() if k != "webhook-signature"}),
        ("standard", lambda h: h | {"webhook-signature": "v1,AAAA"}),
        ("stripe", lambda h: {k: v for k, v in h.items() if k != "stripe-signature"}),
        ("stripe", lambda h: h | {"stripe-signature": h["stripe-signature"][:-2] + "00"}),
        ("github", lambda h: {k: v for k, v in h.items() if k != "x-hub-signature-256"}),
        ("github", lambda h: h | {"x-hub-signature-256": "sha256=" + "0" * 64}),
        ("slack", lambda h: {k: v for k, v in h.items() if k != "x-slack-signature"}),
        ("slack", lambda h: h | {"x-slack-signature": "v0=" + "0" * 64}),
    ],
)
def test_missing_or_wrong_signature_is_401_json_and_nothing_is_queued(stack, db, provider, spoil):
    path, deliver, _ = PROVIDERS[provider]
    body, headers = deliver("forged-1")
    answer = post(stack, path, body, spoil(headers))
    assert answer.status == 401
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"] in {"missing_signature", "invalid_signature"}
    assert stack.queue_depth("EventsQueue") == 0


def test_stale_signature_is_401_even_when_it_verifies(stack):
    body = stripe_event("evt_old")
    answer = post(stack, "/webhooks/stripe", body, stripe_headers(body, at=time.time() - 600))
    assert (answer.status, answer.json()["error"]) == (401, "stale_timestamp")


def test_unknown_standard_source_is_401_like_a_bad_signature_and_unknown_path_404(stack):
    body = sample_body("standard_webhook.json")
    unknown = post(stack, "/webhooks/standard/nobody", body, standard_headers(body, "m1"))
    assert (unknown.status, unknown.json()["error"]) == (401, "invalid_signature")
    nowhere = post(stack, "/webhooks/nowhere", body, {"content-type": "application/json"})
    assert (nowhere.status, nowhere.json()["error"]) == (404, "not_found")


def test_slack_url_verification_is_answered_and_nothing_queued(stack):
    body = sample_body("slack_url_verification.json")
    answer = post(stack, "/webhooks/slack", body, slack_headers(body))
    assert answer.status == 200
    assert answer.json() == {"challenge": json.loads(body)["challenge"]}
    assert stack.queue_depth("EventsQueue") == 0


def test_slack_retry_number_is_recorded_with_the_event(stack, db):
    data = json.loads(sample_body("slack_event_callback.json"))
    body = json.dumps(data).encode()
    # GIVEN Slack's first attempt never reached us WHEN its first retry arrives
    answer = post(stack, "/webhooks/slack", body, slack_headers(body, retry=1))
    stack.drain()
    assert (answer.status, answer.body) == (200, b"")
    (payload,) = db.execute("SELECT payload FROM event_log WHERE provider = 'slack'").fetchone()
    assert payload["_delivery"] == {"retry_num": 1, "retry_reason": "http_timeout"}


def test_github_ping_is_accepted_and_recorded(stack, db):
    body = sample_body("github_ping.json")
    answer = post(stack, "/webhooks/github", body, github_headers(body, "ping-1", "ping"))
    stack.drain()
    assert answer.status == 200
    assert db.execute("SELECT kind, outcome FROM event_log").fetchall() == [("ping", "recorded")]


def test_a_provider_without_a_secret_answers_503_and_the_others_still_work(stack, db, monkeypatch):
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET")
    body = stripe_event("evt_x")
    answer = post(stack, "/webhooks/stripe", body, stripe_headers(body))
    assert (answer.status, answer.json()["error"]) == (503, "not_configured")
    assert post(stack, "/webhooks/github", *signed_github("still-fine")).status == 200


def test_every_generic_route_in_the_template_is_served_by_the_router(stack):
    template = Template.load()
    events = template.functions()[FUNCTION]["Properties"]["Events"]
    paths = sorted(e["Properties"]["Path"] for e in events.values() if e["Type"] == "HttpApi")
    assert paths == ["/webhooks/github", "/webhooks/slack", "/webhooks/standard/{source}", "/webhooks/stripe"]
    assert all(e["Properties"]["Method"] == "POST" for e in events.values())
    stack.handler(FUNCTION)  # imports the function's module, as Lambda would
    router = sys.modules["generic_ingest"].ROUTER
    assert sorted(r.template for r in router.routes) == paths
    unipile = template.functions()["UnipileIngestFunction"]["Properties"]["Events"]
    assert [e["Properties"]["Path"] for e in unipile.values()] == ["/webhooks/unipile"]


@pytest.mark.parametrize(
    ("path", "function", "params"),
    [
        ("/webhooks/standard/acme", FUNCTION, {"source": "acme"}),
        ("/webhooks/stripe", FUNCTION, {}),
        ("/webhooks/github", FUNCTION, {}),
        ("/webhooks/slack", FUNCTION, {}),
        ("/webhooks/unipile", "UnipileIngestFunction", {}),
    ],
)
def test_the_local_stack_serves_each_route_from_the_template(path, function, params):
    routes = [r for r in http_routes(Template.load()) if r.match("POST", path) is not None]
    assert [(r.function, r.match("POST", path)) for r in routes] == [(function, params)]
