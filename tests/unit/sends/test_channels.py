"""How a provider's refusal is read: a warning or rate limit (reschedule), or not (unit, no network)."""

from __future__ import annotations

import json

import pytest

from exactly_once.core.errors import ProviderCallError
from exactly_once.sends.channels import DEFAULT_RATE_LIMIT_WAIT, UnipileSender, WhatsAppSender


def unipile() -> UnipileSender:
    return UnipileSender(client=None)  # type: ignore[arg-type]  # rate_limit() never calls the client


def whatsapp() -> WhatsAppSender:
    return WhatsAppSender(client=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "expected"),
    [
        (429, "{}", 7.0, 7.0),
        (429, "not json", None, DEFAULT_RATE_LIMIT_WAIT),
        (422, json.dumps({"type": "errors/limit_exceeded"}), None, DEFAULT_RATE_LIMIT_WAIT),
        (403, json.dumps({"type": "errors/linkedin_warning"}), 30.0, 30.0),
        (400, json.dumps({"type": "errors/invalid_parameters"}), None, None),
        (503, "{}", None, None),
    ],
)
def test_unipile_warnings_and_rate_limits(status, body, retry_after, expected):
    assert unipile().rate_limit(ProviderCallError(status, body, retry_after=retry_after)) == expected


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, 130429, DEFAULT_RATE_LIMIT_WAIT),
        (400, 131056, DEFAULT_RATE_LIMIT_WAIT),
        (400, 100, None),
        (401, 190, None),
    ],
)
def test_whatsapp_rate_limit_codes(status, code, expected):
    body = json.dumps({"error": {"code": code, "message": "x"}})
    assert whatsapp().rate_limit(ProviderCallError(status, body)) == expected
