"""What authenticating and splitting one delivery costs per adapter, as ratios in one process.

For each generic adapter: ``authenticate`` + ``split`` of its sample delivery (re-signed for now),
against two references timed in the same run on the same bytes: the floor (one HMAC-SHA256 over the
body plus ``json.loads``, the work no verifier can skip) and, where the provider publishes one, its
own SDK's verifier (standardwebhooks ``Webhook.verify``, stripe ``WebhookSignature.verify_header``,
slack_sdk ``SignatureVerifier.is_valid_request``). Rounds are interleaved; the median of 7 is taken.

    .venv/bin/python -m bench.adapters_bench
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import standardwebhooks
import stripe
from slack_sdk.signature import SignatureVerifier

from bench.common import median, table, write_result
from devstack.lambda_runtime import add_code_paths, apigw_event

add_code_paths()

from exactly_once.flows.generic.github import GitHubAdapter  # noqa: E402
from exactly_once.flows.generic.slack import SlackAdapter  # noqa: E402
from exactly_once.flows.generic.standard import StandardWebhooksAdapter, parse_secrets  # noqa: E402
from exactly_once.flows.generic.stripe import StripeAdapter  # noqa: E402
from exactly_once.flows.unipile.adapter import UnipileAdapter  # noqa: E402
from exactly_once.ingest.adapters.base import WebhookAdapter  # noqa: E402 - the layer is on the path only now
from exactly_once.ingest.apigw import Request  # noqa: E402
from tests.generic_support import (  # noqa: E402
    GITHUB_SECRET,
    SLACK_SECRET,
    STANDARD_SECRET,
    STRIPE_SECRET,
    UNIPILE_SECRET,
    github_headers,
    sample_body,
    slack_headers,
    standard_headers,
    stripe_headers,
    unipile_headers,
)

LOOPS = 2000
ROUNDS = 7


def _case(
    name: str, path: str, body: bytes, headers: dict[str, str], adapter: WebhookAdapter, key: str
) -> dict[str, Any]:
    request = Request.from_apigw_v2(apigw_event("POST", f"http://h{path}", body, headers))
    return {"name": name, "request": request, "body": body, "headers": headers, "adapter": adapter, "key": key}


def cases() -> list[dict[str, Any]]:
    std = sample_body("standard_webhook.json")
    stp = sample_body("stripe_event.json")
    gh = sample_body("github_push.json")
    sl = sample_body("slack_event_callback.json")
    uni = sample_body("unipile_message_received.json")
    return [
        _case(
            "standard",
            "/webhooks/standard/acme",
            std,
            standard_headers(std, "msg_bench"),
            StandardWebhooksAdapter(parse_secrets({"acme": STANDARD_SECRET})),
            "whsec",
        ),
        _case("stripe", "/webhooks/stripe", stp, stripe_headers(stp), StripeAdapter([STRIPE_SECRET]), STRIPE_SECRET),
        _case(
            "github", "/webhooks/github", gh, github_headers(gh, "d-bench"), GitHubAdapter(GITHUB_SECRET), GITHUB_SECRET
        ),
        _case("slack", "/webhooks/slack", sl, slack_headers(sl), SlackAdapter(SLACK_SECRET), SLACK_SECRET),
        _case("unipile", "/webhooks/unipile", uni, unipile_headers(), UnipileAdapter(UNIPILE_SECRET), UNIPILE_SECRET),
    ]


def sdk_verifier(case: dict[str, Any]) -> Callable[[], Any] | None:
    body, headers = case["body"], case["headers"]
    if case["name"] == "standard":
        hook = standardwebhooks.Webhook(STANDARD_SECRET)
        return lambda: hook.verify(body, headers)
    if case["name"] == "stripe":
        return lambda: (
            stripe.WebhookSignature.verify_header(body.decode(), headers["stripe-signature"], STRIPE_SECRET, 300),
            json.loads(body),
        )
    if case["name"] == "slack":
        verifier = SignatureVerifier(SLACK_SECRET)
        return lambda: (verifier.is_valid_request(body, headers), json.loads(body))
    return None


def per_call_us(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    for _ in range(LOOPS):
        fn()
    return (time.perf_counter() - start) / LOOPS * 1e6


def main() -> None:
    rows, data = [], {}
    for case in cases():
        adapter, request, body = case["adapter"], case["request"], case["body"]
        key = case["key"].encode()

        def ours(adapter: WebhookAdapter = adapter, request: Request = request) -> Any:
            adapter.authenticate(request)
            return adapter.split(request)

        def floor(body: bytes = body, key: bytes = key) -> Any:
            return hmac.new(key, body, hashlib.sha256).digest(), json.loads(body)

        sdk = sdk_verifier(case)
        timings: dict[str, list[float]] = {"ours": [], "floor": [], "sdk": []}
        for _ in range(ROUNDS):
            timings["floor"].append(per_call_us(floor))
            timings["ours"].append(per_call_us(ours))
            if sdk is not None:
                timings["sdk"].append(per_call_us(sdk))
        ours_us, floor_us = median(timings["ours"]), median(timings["floor"])
        sdk_us = median(timings["sdk"]) if sdk is not None else None
        data[case["name"]] = {
            "body_bytes": len(body),
            "ours_vs_floor": round(ours_us / floor_us, 2),
            "ours_vs_sdk": round(ours_us / sdk_us, 2) if sdk_us else None,
            "local_ours_us": round(ours_us, 1),
        }
        rows.append(
            (
                case["name"],
                len(body),
                f"{ours_us / floor_us:.2f}",
                f"{ours_us / sdk_us:.2f}" if sdk_us else "n/a (no SDK)",
                f"{ours_us:.1f}",
            )
        )
    print(table(rows, ("adapter", "body B", "ours / floor", "ours / provider SDK", "ours µs (local)")))
    print(f"\nwrote {write_result('adapters', {'loops': LOOPS, 'rounds': ROUNDS, 'adapters': data})}")


if __name__ == "__main__":
    main()
