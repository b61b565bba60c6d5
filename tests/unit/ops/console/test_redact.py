"""Secrets out of console answers: by key anywhere, by value anywhere, inside JSON held as text too."""

from __future__ import annotations

import json

from exactly_once.ops.console.redact import REDACTED, redact, secret_values


def test_secret_named_keys_are_hidden_at_any_depth_and_inside_json_text():
    # GIVEN a quarantine row whose raw body (JSON as text) carries a Graph clientState
    raw = json.dumps({"value": [{"clientState": "s3cr3t-state", "id": "m1"}]})
    row = {"id": 1, "raw": raw, "headers": {"Authorization": "Bearer abc", "x-id": "7"}}
    # WHEN it is redacted without knowing any secret value
    shown = redact(row, [])
    # THEN the secret-named fields are hidden, everything else is kept
    assert json.loads(shown["raw"]) == {"value": [{"clientState": REDACTED, "id": "m1"}]}
    assert shown["headers"] == {"Authorization": REDACTED, "x-id": "7"}
    assert shown["id"] == 1


def test_known_secret_values_are_hidden_wherever_they_appear(monkeypatch):
    # GIVEN an app secret document with a JSON-valued secret, and a secret-named environment variable
    monkeypatch.setenv("LOCAL_WEBHOOK_SECRET", "env-secret-value-123")
    document = {"STANDARD_WEBHOOK_SECRETS": json.dumps({"acme": "whsec_inner_value"}), "SHORT": "abc"}
    secrets = secret_values(document)
    # WHEN text quoting them is redacted
    shown = redact({"note": "sig whsec_inner_value and env-secret-value-123, abc stays"}, secrets)
    # THEN both values are gone, and a value too short to be a secret is left alone
    assert shown == {"note": f"sig {REDACTED} and {REDACTED}, abc stays"}
