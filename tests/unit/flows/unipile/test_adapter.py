"""The Unipile adapter without any network: the static secret header, keys and groups."""

from __future__ import annotations

import json

import pytest

from exactly_once.core.errors import ConfigurationError
from exactly_once.flows.unipile.adapter import UnipileAdapter
from tests.generic_support import UNIPILE_SECRET, sample_body, unipile_headers
from tests.unit.flows.support import rejected, request


@pytest.mark.parametrize("secret", ["", "short"])
def test_unipile_refuses_to_start_without_a_real_secret(secret):
    with pytest.raises(ConfigurationError):
        UnipileAdapter(secret)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"content-type": "application/json"}, "missing_secret"),
        (unipile_headers("unipile-webhook-secret-wrong"), "invalid_secret"),
        (unipile_headers(UNIPILE_SECRET, header="X-Other-Header"), "missing_secret"),
    ],
)
def test_unipile_missing_or_wrong_secret_is_401(headers, code):
    body = sample_body("unipile_message_received.json")
    assert rejected(UnipileAdapter(UNIPILE_SECRET), request("/webhooks/unipile", body, headers)) == code


def test_unipile_header_name_is_configurable_and_events_keyed_by_event_and_message_id():
    body = sample_body("unipile_message_received.json")
    adapter = UnipileAdapter(UNIPILE_SECRET, header="X-Unipile-Auth")
    req = request("/webhooks/unipile", body, unipile_headers(header="X-Unipile-Auth"))
    adapter.authenticate(req)
    (event,) = adapter.split(req).events
    assert event.key == "unipile:dfXlh46vQYCsMbVarumWlg:message_received:ykmhfXlRW0W_cqReJYrfBw"
    assert (event.kind, event.group) == ("message_received", "unipile:chat:R8J-xM9WX7eoHLp6gSVtWQ")


def test_unipile_account_status_without_message_id_is_keyed_by_its_body():
    body = json.dumps({"AccountStatus": {"account_id": "acc1", "account_type": "LINKEDIN", "message": "OK"}}).encode()
    (event,) = UnipileAdapter(UNIPILE_SECRET).split(request("/webhooks/unipile", body, unipile_headers())).events
    assert event.kind == "account_status"
    assert event.key.startswith("unipile:acc1:account_status:body:")
