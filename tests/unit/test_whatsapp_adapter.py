"""The WhatsApp adapter, message reading and responders without any network."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from devstack.lambda_runtime import apigw_event
from exactly_once.core.errors import ConfigurationError, ForbiddenError, PermanentEventError, UnauthorizedError
from exactly_once.core.events import QUARANTINE_KIND
from exactly_once.flows.whatsapp.adapter import (
    DEFAULT_DEDUP_WINDOW_SECONDS,
    WhatsAppAdapter,
    message_key,
    signature,
    status_key,
)
from exactly_once.flows.whatsapp.messages import parse_message, parse_status
from exactly_once.flows.whatsapp.responders import EchoResponder, load_responder
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


def test_echo_responder_answers_like_the_seed_bot():
    bot = EchoResponder()
    message = parse_message({"metadata": {"phone_number_id": PHONE}, "message": text_message("w", "test")})
    assert bot.reply(message) == "test is working"
    blank = parse_message({"metadata": {"phone_number_id": PHONE}, "message": text_message("w", "  ")})
    assert bot.reply(blank) is None


def test_load_responder_from_a_spec():
    assert isinstance(load_responder(""), EchoResponder)
    assert type(load_responder("tests.whatsapp_bots:ShoutingBot")).__name__ == "ShoutingBot"
    assert isinstance(load_responder("exactly_once.flows.whatsapp.responders:EchoResponder"), EchoResponder)
    for bad in ("no-colon", "exactly_once.nope:X", "exactly_once.flows.whatsapp.responders:load_missing", "json:dumps"):
        with pytest.raises(ConfigurationError):
            load_responder(bad)


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
        assert event.key.startswith(("whatsapp:msg:", "whatsapp:status:", "whatsapp:quarantine:"))
        assert event.group.startswith("whatsapp:")
        assert event.kind == QUARANTINE_KIND or event.key.split(":")[1] in ("msg", "status")
        json.dumps(event.payload)  # it must travel as an SQS message


def test_concurrent_deduper_gives_powertools_a_thread_safe_local_cache(monkeypatch):
    # Powertools keeps its local cache in ``_cache``: if a release renames it, this fails instead of racing silently
    from exactly_once.ingest.concurrent_dedup import ConcurrentDeduper, _LockedLRU

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    deduper = ConcurrentDeduper("table", key_prefix="whatsapp-ingest", window_seconds=60)
    cache = deduper._layer._cache
    assert isinstance(cache, _LockedLRU) and cache.max_items == 4096
    cache["a"] = 1
    assert cache.get("a") == 1 and "a" in cache
