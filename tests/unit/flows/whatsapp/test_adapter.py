"""The WhatsApp adapter without any network: handshake, signature, keys and groups, quarantine items."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from devstack.lambda_runtime import apigw_event
from exactly_once.core.errors import ForbiddenError, UnauthorizedError
from exactly_once.core.events import MAX_MESSAGE_BYTES, QUARANTINE_KIND, QUARANTINE_RAW_BYTES, InboundEvent, storable
from exactly_once.flows.whatsapp.adapter import (
    DEFAULT_DEDUP_WINDOW_SECONDS,
    WhatsAppAdapter,
    _quarantine_item,
    field_key,
    message_key,
    signature,
    status_key,
)
from exactly_once.ingest.apigw import Request
from tests.whatsapp_support import (
    CUSTOMER,
    PHONE,
    WABA,
    change,
    entry,
    envelope,
    failed,
    headers_for,
    meta_bytes,
    one_text,
    status,
    text_message,
)

SECRET, TOKEN = "app-secret", "verify-token"


def adapter() -> WhatsAppAdapter:
    return WhatsAppAdapter(SECRET, TOKEN)


def request(raw: bytes, sig: str | None = None, method: str = "POST", query: str = "") -> Request:
    headers = {"content-type": "application/json"}
    if sig is not None:
        headers["x-hub-signature-256"] = sig
    return Request.from_apigw_v2(apigw_event(method, f"http://h/webhooks/whatsapp{query}", raw, headers))


def test_window_covers_metas_seven_days_of_retries():
    assert DEFAULT_DEDUP_WINDOW_SECONDS > 7 * 24 * 3600
    assert adapter().accepted_status == 200


def test_handshake_only_on_get():
    assert adapter().handshake(request(b"{}", method="POST", query="?hub.mode=subscribe")) is None
    ok = adapter().handshake(
        request(b"", method="GET", query=f"?hub.mode=subscribe&hub.verify_token={TOKEN}&hub.challenge=42")
    )
    assert ok is not None and (ok["statusCode"], ok["body"]) == (200, "42")
    with pytest.raises(ForbiddenError):
        adapter().handshake(request(b"", method="GET", query="?hub.mode=subscribe&hub.verify_token=x&hub.challenge=4"))


def test_signature_is_over_the_exact_bytes():
    raw = meta_bytes(one_text("wamid.1", "café"))
    adapter().authenticate(request(raw, signature(SECRET, raw)))
    adapter().authenticate(request(raw, signature(SECRET, raw).upper().replace("SHA256=", "sha256=")))
    for bad in (None, signature(SECRET, raw + b" "), signature("other", raw), signature(SECRET, raw)[7:]):
        with pytest.raises(UnauthorizedError):
            adapter().authenticate(request(raw, bad))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=256))
def test_any_tampering_with_signed_bytes_is_refused(extra):
    raw = meta_bytes(one_text("wamid.1"))
    tampered = raw + extra if extra else raw[:-1]
    with pytest.raises(UnauthorizedError):
        adapter().authenticate(request(tampered, signature(SECRET, raw)))


def test_split_keys_and_groups():
    payload = envelope(
        entry(
            change(
                messages=[text_message("wamid.M1", "a"), text_message("wamid.M2", "b", sender="447700900123")],
                statuses=[status("wamid.O1", "read"), failed("wamid.O2")],
            )
        )
    )
    raw = meta_bytes(payload)
    events = adapter().split(request(raw, headers_for(raw)["x-hub-signature-256"])).events
    assert [(e.key, e.group, e.kind) for e in events] == [
        (message_key("wamid.M1"), f"whatsapp:{PHONE}:{CUSTOMER}", "message:text"),
        (message_key("wamid.M2"), f"whatsapp:{PHONE}:447700900123", "message:text"),
        (status_key("wamid.O1", "read"), f"whatsapp:{PHONE}:{CUSTOMER}", "status:read"),
        (status_key("wamid.O2", "failed"), f"whatsapp:{PHONE}:{CUSTOMER}", "status:failed"),
    ]
    second = events[1].payload
    assert second["contact"]["wa_id"] == "447700900123" and second["waba_id"] == WABA
    # the same wamid in two statuses of different kinds: two keys; the same status twice: one key
    assert status_key("wamid.O1", "read") != status_key("wamid.O1", "delivered")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"null",
        b'{"object":"whatsapp_business_account","entry":{}}',
        json.dumps({"object": "instagram", "entry": []}).encode(),
    ],
)
def test_unreadable_signed_body_becomes_one_quarantine_event(body):
    events = adapter().split(request(body)).events
    assert len(events) == 1 and events[0].kind == QUARANTINE_KIND
    assert events[0].payload["raw"] == body.decode()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
_shaped = st.fixed_dictionaries(
    {
        "object": st.sampled_from(["whatsapp_business_account", "page"]),
        "entry": st.lists(
            st.fixed_dictionaries(
                {
                    "id": _json,
                    "changes": st.lists(
                        st.fixed_dictionaries(
                            {
                                "field": st.sampled_from(["messages", "account_update"]) | _json,
                                "value": st.fixed_dictionaries(
                                    {},
                                    optional={
                                        "metadata": st.fixed_dictionaries({}, optional={"phone_number_id": _json}),
                                        "contacts": _json,
                                        "messages": st.lists(_json | st.just({"id": "w", "from": "1"}), max_size=3),
                                        "statuses": st.lists(
                                            _json | st.just({"id": "w", "status": "read"}), max_size=3
                                        ),
                                    },
                                )
                                | _json,
                            }
                        )
                        | _json,
                        max_size=3,
                    )
                    | _json,
                }
            ),
            max_size=3,
        ),
    }
)


_CONTACTS_NOT_A_LIST = {
    "object": "whatsapp_business_account",
    "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "metadata": {"phone_number_id": "1"}, "contacts": 5, "messages": [{"id": "w", "from": "1"}]}}]}],
}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json, _shaped))
@example(_CONTACTS_NOT_A_LIST)  # found by this test once it looked inside "value"
def test_split_never_raises_on_any_signed_json(body):
    raw = json.dumps(body).encode()
    events = adapter().split(request(raw)).events
    for event in events:
        # every event is either one the worker can key and order, or a quarantine carrying the raw text
        assert event.key.startswith(("whatsapp:msg:", "whatsapp:status:", "whatsapp:field:", "whatsapp:quarantine:"))
        assert event.group.startswith("whatsapp:")
        assert event.kind == QUARANTINE_KIND or event.key.split(":")[1] in ("msg", "status", "field")
        json.dumps(event.payload)  # it must travel as an SQS message


KIB = 1024


def _size(event: InboundEvent) -> int:
    return len(event.to_message().encode("utf-8"))


def test_whatsapp_quarantine_items_are_bounded_and_keyed_by_the_whole_item():
    item = {"id": "wamid.x", "junk": "z" * (500 * KIB)}
    event = storable(_quarantine_item(item, "message lacks a string id or from"))  # as ingest carries it
    text = json.dumps(item, ensure_ascii=False, sort_keys=True)
    assert event.key == f"whatsapp:quarantine:{hashlib.sha256(text.encode()).hexdigest()}"
    assert len(event.payload["raw"].encode()) <= QUARANTINE_RAW_BYTES and text.startswith(event.payload["raw"])
    assert "truncated" in event.payload["reason"] and str(len(text.encode())) in event.payload["reason"]
    assert _size(event) <= MAX_MESSAGE_BYTES
    small = _quarantine_item({"id": 1}, "message lacks a string id or from")
    assert small.payload == {"raw": '{"id": 1}', "reason": "message lacks a string id or from"}


def test_a_whatsapp_item_with_a_lone_surrogate_is_quarantined_not_a_crash():
    event = storable(_quarantine_item({"id": "\ud800"}, "entry has no changes[] array"))
    event.to_message().encode("utf-8")


TEMPLATE_APPROVED = {
    "event": "APPROVED",
    "message_template_id": 1234567,
    "message_template_name": "order_update",
    "message_template_language": "en_US",
    "reason": "NONE",
    "message_template_category": "UTILITY",
}


def _routine(*changes: dict, time: int = 1795334400) -> bytes:
    return meta_bytes(envelope({**entry(*changes), "time": time}))


def test_routine_fields_become_field_events_keyed_by_entry_and_change():
    # GIVEN Meta's routine updates on the messages webhook: a template approved, an account and a quality update
    template = {"field": "message_template_status_update", "value": TEMPLATE_APPROVED}
    account = {"field": "account_update", "value": {"phone_number": "15550783881", "event": "VERIFIED_ACCOUNT"}}
    quality = {"field": "phone_number_quality_update", "value": {"display_phone_number": "15550783881",
               "event": "FLAGGED", "current_limit": "TIER_10K"}}  # fmt: skip
    events = adapter().split(request(_routine(template, account, quality))).events
    # THEN each is one readable event, not a quarantine
    assert [e.kind for e in events] == [
        "field:message_template_status_update",
        "field:account_update",
        "field:phone_number_quality_update",
    ]
    first = events[0]
    assert first.key == field_key(WABA, 1795334400, "message_template_status_update", TEMPLATE_APPROVED)
    assert first.group == f"whatsapp:{WABA}:message_template_status_update"
    assert first.payload == {"waba_id": WABA, "time": 1795334400, "field": "message_template_status_update",
                             "value": TEMPLATE_APPROVED}  # fmt: skip
    # AND Meta's retry of the same POST gives the same keys; the same update at another time is another event
    again = adapter().split(request(_routine(template, account, quality))).events
    assert [e.key for e in again] == [e.key for e in events]
    later = adapter().split(request(_routine(template, time=1795334460))).events
    assert later[0].key != first.key


@pytest.mark.parametrize("field", [None, 7, "", "Account Update", "x" * 65, "messages\u0000"])
def test_a_change_without_a_readable_field_name_is_still_quarantined(field):
    events = adapter().split(request(_routine({"field": field, "value": {"event": "X"}}))).events
    assert [e.kind for e in events] == [QUARANTINE_KIND]
    assert "no readable field name" in events[0].payload["reason"]


def test_several_app_secrets_each_authenticate_and_no_other_does():
    # GIVEN two Meta apps posting to one stack (or the old and the new secret of a rotation)
    from exactly_once.flows.whatsapp.adapter import app_secrets

    both = WhatsAppAdapter(app_secrets('["old-secret", "new-secret"]'), TOKEN)
    raw = meta_bytes(one_text("wamid.R1"))
    for secret in ("old-secret", "new-secret"):
        both.authenticate(request(raw, signature(secret, raw)))  # THEN a body signed with either is authentic
    with pytest.raises(UnauthorizedError):
        both.authenticate(request(raw, signature("another-apps-secret", raw)))
    assert app_secrets(" a , b ,") == ("a", "b") and app_secrets("only") == ("only",)


@pytest.mark.parametrize("value", ["", " , ", "[1, 2]", "[not json"])
def test_an_app_secret_setting_without_a_secret_is_refused(value):
    from exactly_once.core.errors import ConfigurationError
    from exactly_once.flows.whatsapp.adapter import app_secrets

    with pytest.raises(ConfigurationError):
        WhatsAppAdapter(app_secrets(value), TOKEN)
