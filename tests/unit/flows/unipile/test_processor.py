"""Who wrote a Unipile message: the account itself (outbound) or someone else (inbound)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exactly_once.core.errors import PermanentEventError
from exactly_once.flows.unipile.processor import direction_of, parse_message
from tests.generic_support import sample_body


def payload(name: str = "unipile_message_received.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads(sample_body(name))
    return data


def test_the_samples_are_one_inbound_and_one_outbound():
    assert direction_of(payload()) == "inbound"
    assert direction_of(payload("unipile_message_sent_by_account.json")) == "outbound"


@pytest.mark.parametrize(("flag", "expected"), [(True, "outbound"), (False, "inbound")])
def test_is_sender_wins_over_the_ids(flag, expected):
    data = payload("unipile_message_sent_by_account.json") | {"is_sender": flag}
    assert direction_of(data) == expected


@pytest.mark.parametrize("drop", ["account_info", "sender"])
def test_without_is_sender_or_either_id_the_direction_is_unknown(drop):
    data = payload()
    del data[drop]
    with pytest.raises(PermanentEventError):
        direction_of(data)


def test_is_sender_as_a_string_is_not_trusted():
    data = payload() | {"is_sender": "true"}  # not a boolean: fall back to comparing ids
    assert direction_of(data) == "inbound"


def test_parse_message_reads_the_fields_and_tolerates_a_bad_timestamp():
    message = parse_message(payload())
    assert (message.account_id, message.message_id, message.direction) == (
        "dfXlh46vQYCsMbVarumWlg",
        "ykmhfXlRW0W_cqReJYrfBw",
        "inbound",
    )
    assert message.sent_at is not None and message.sent_at.utcoffset() is not None
    assert parse_message(payload() | {"timestamp": "yesterday"}).sent_at is None
    assert parse_message(payload() | {"timestamp": "2026-11-22T09:49:07"}).sent_at is None  # no zone: unknown


@pytest.mark.parametrize("field", ["account_id", "message_id"])
def test_a_message_event_without_its_ids_is_permanent(field):
    data = payload()
    data[field] = ""
    with pytest.raises(PermanentEventError):
        parse_message(data)
