"""The generic ingest router: a provider without its secret answers 503 not_configured, counted, the others serve."""

from __future__ import annotations

import json

from devstack.lambda_runtime import apigw_event
from exactly_once.core.errors import ConfigurationError
from exactly_once.core.settings import IngestSettings
from exactly_once.ingest.router import IngestRouter


def _missing_secret():
    raise ConfigurationError("secret STRIPE_WEBHOOK_SECRET is not configured (environment or APP_SECRET_ARN)")


def _values(value):
    return value if isinstance(value, list) else [value]


def test_a_provider_without_its_secret_answers_503_and_is_counted(monkeypatch, capsys):
    # GIVEN a router whose stripe route could not be built (its secret is missing)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    settings = IngestSettings(idempotency_table="t", events_queue_url="q", max_body_bytes=1024)
    router = IngestRouter({"/webhooks/stripe": _missing_secret}, settings)
    capsys.readouterr()
    # WHEN Stripe delivers twice
    answers = [router.handle(apigw_event("POST", "http://x/webhooks/stripe", b"{}", {})) for _ in range(2)]
    # THEN each is a 503 not_configured (Stripe retries) and each is counted under the provider's name
    assert [(a["statusCode"], json.loads(a["body"])["error"]) for a in answers] == [(503, "not_configured")] * 2
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    counted = [(b["provider"], v) for b in blobs if "NotConfigured" in b for v in _values(b["NotConfigured"])]
    assert counted == [("stripe", 1), ("stripe", 1)]
