"""events.storable and the SQS envelope: what SQS and Postgres cannot carry never reaches them.

Events too large for SQS become quarantine events that fit; NUL, lone surrogates and non-finite
numbers are cleaned or quarantined; an event round-trips through its message.
"""

from __future__ import annotations

import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from exactly_once.core.events import (
    MAX_MESSAGE_BYTES,
    QUARANTINE_KIND,
    QUARANTINE_RAW_BYTES,
    InboundEvent,
    storable,
    unreadable_event,
)

KIB = 1024


def _size(event: InboundEvent) -> int:
    return len(event.to_message().encode("utf-8"))


def _event(payload, key="p:k"):
    return InboundEvent("p", key, "p:g", "created", payload)


# -- Characters SQS and Postgres cannot hold ---------------------------------------------------


def test_nul_and_lone_surrogates_become_replacement_characters_and_keys_stay_stable():
    event = _event({"text": "a\x00b\ud800", "list": ["\udfff"], "ok": "\U0001f600"}, key="p:id\x00")
    clean = storable(event)
    assert clean.payload == {"text": "a\ufffdb\ufffd", "list": ["\ufffd"], "ok": "\U0001f600"}
    assert clean.key == "p:id\ufffd" and storable(event).key == clean.key
    clean.to_message().encode("utf-8")  # SQS can carry it


def test_a_literal_backslash_u0000_in_text_is_left_alone():
    event = _event({"text": "\\u0000"})
    assert storable(event) == event


def test_nan_and_infinity_become_a_quarantine_event_with_the_same_key():
    clean = storable(_event({"n": float("nan"), "m": float("inf")}))
    assert clean.kind == QUARANTINE_KIND and clean.key == "p:k"
    assert "NaN" in clean.payload["raw"] and "NaN" in clean.payload["reason"]


@given(
    st.recursive(
        st.text() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.none(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
)
def test_any_payload_becomes_utf8_json_without_nul(payload):
    message = storable(_event({"v": payload}, key="p:" + json.dumps(payload)[:50])).to_message()
    message.encode("utf-8")
    assert "\\u0000" not in message.replace("\\\\", "")


# -- Events too large for SQS -------------------------------------------------------------------


def test_an_event_under_the_limit_is_left_alone():
    event = InboundEvent("p", "p:k", "p:g", "created", {"text": "x" * (200 * KIB)})
    assert storable(event) is event


def test_an_oversize_event_becomes_a_quarantine_event_with_its_first_bytes_size_and_digest():
    payload = {"text": "é" * (300 * KIB)}
    event = InboundEvent("p", "p:k", "p:mailbox:1", "message:text", payload)
    whole = json.dumps(payload, ensure_ascii=False).encode()
    clean = storable(event)
    assert (clean.kind, clean.key, clean.group, clean.provider) == (QUARANTINE_KIND, "p:k", "p:quarantine", "p")
    assert _size(clean) <= MAX_MESSAGE_BYTES
    assert (
        whole.startswith(clean.payload["raw"].encode()) and len(clean.payload["raw"].encode()) <= QUARANTINE_RAW_BYTES
    )
    reason = clean.payload["reason"]
    assert str(len(whole)) in reason and hashlib.sha256(whole).hexdigest() in reason and "message:text" in reason
    assert storable(event) == clean  # the same delivery always becomes the same event
    assert storable(clean) is clean


def test_an_oversize_quarantine_event_keeps_its_reason_and_group_and_truncates_its_raw_body():
    raw = b"{" + b"a" * (900 * KIB)
    event = unreadable_event("livekit", raw, "malformed JSON", group="livekit:room:RM_1")
    clean = storable(event)
    assert (clean.key, clean.group) == (event.key, "livekit:room:RM_1")
    assert clean.payload["reason"].startswith("malformed JSON (")
    assert hashlib.sha256(raw).hexdigest() in clean.payload["reason"] and str(len(raw)) in clean.payload["reason"]
    assert raw.decode().startswith(clean.payload["raw"]) and _size(clean) <= MAX_MESSAGE_BYTES


def test_json_escapes_cannot_push_the_quarantine_event_over_the_limit():
    # Every control character is six bytes once JSON-escaped: 200 KiB of them would be 1.2 MB.
    event = unreadable_event("p", b"\x01" * (400 * KIB), "unreadable")
    clean = storable(event)
    assert _size(clean) <= MAX_MESSAGE_BYTES and clean.payload["raw"].startswith("\x01")


def test_a_huge_key_and_reason_are_bounded_stably():
    event = InboundEvent(
        "p", "p:" + "k" * (300 * KIB), "p:quarantine", QUARANTINE_KIND, {"raw": "r", "reason": "x" * (300 * KIB)}
    )
    clean = storable(event)
    assert _size(clean) <= MAX_MESSAGE_BYTES
    assert clean.key.startswith("p:quarantine:key-sha256:") and storable(event).key == clean.key
    assert len(clean.payload["reason"]) < 4 * KIB


@settings(max_examples=25, deadline=None)
@given(st.text(min_size=1, max_size=8).map(lambda s: s * (70 * KIB)))
def test_any_oversize_text_fits_whole_characters(text):
    clean = storable(InboundEvent("p", "p:k", "p:g", "created", {"t": text}))
    message = clean.to_message()
    assert len(message.encode("utf-8")) <= MAX_MESSAGE_BYTES
    assert InboundEvent.from_message(message) == clean


# -- The SQS envelope ---------------------------------------------------------------------------


@given(st.text(max_size=200))
def test_envelope_round_trips(text_value):
    event = InboundEvent("graph", "k" + text_value, "g", "created", {"t": text_value}, received_at=1.5)
    assert InboundEvent.from_message(event.to_message()) == event
    assert len(event.dedup_id) == 64
