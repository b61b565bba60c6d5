"""WhatsApp messages and statuses read from the events the adapter splits (no network)."""

from __future__ import annotations

import pytest

from exactly_once.core.errors import PermanentEventError
from exactly_once.flows.whatsapp.messages import parse_message, parse_status
from tests.whatsapp_support import CUSTOMER, PHONE, WABA, failed, text_message


def test_parse_message_reads_text_contact_and_context():
    payload = {
        "waba_id": WABA,
        "metadata": {"phone_number_id": PHONE},
        "contact": {"profile": {"name": "Ana"}, "wa_id": CUSTOMER},
        "message": {**text_message("wamid.M", "hi"), "context": {"from": PHONE, "id": "wamid.PREV"}},
    }
    message = parse_message(payload)
    assert (message.wamid, message.wa_id, message.text, message.contact_name, message.context_wamid) == (
        "wamid.M",
        CUSTOMER,
        "hi",
        "Ana",
        "wamid.PREV",
    )
    with pytest.raises(PermanentEventError):
        parse_message({"metadata": {}, "message": {"id": "x"}})


def test_parse_status_keeps_errors():
    update = parse_status({"metadata": {"phone_number_id": PHONE}, "status": failed("wamid.F")})
    assert update.status == "failed" and update.errors and update.errors[0]["code"] == 131047
    with pytest.raises(PermanentEventError):
        parse_status({"status": {"status": "read"}})
