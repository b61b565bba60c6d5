"""Events too large for SQS become quarantine events that fit; SendMessageBatch stays under 256 KiB and 10 entries."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from exactly_once.core.events import (
    MAX_MESSAGE_BYTES,
    QUARANTINE_KIND,
    QUARANTINE_RAW_BYTES,
    InboundEvent,
    quarantine_event,
    storable,
)
from exactly_once.core.fifo import SQS_BATCH, SQS_BATCH_BYTES, EventQueue
from exactly_once.flows.whatsapp.adapter import _quarantine_item

KIB = 1024


def _size(event: InboundEvent) -> int:
    return len(event.to_message().encode("utf-8"))


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
    event = quarantine_event("livekit", raw, "malformed JSON", group="livekit:room:RM_1")
    clean = storable(event)
    assert (clean.key, clean.group) == (event.key, "livekit:room:RM_1")
    assert clean.payload["reason"].startswith("malformed JSON (")
    assert hashlib.sha256(raw).hexdigest() in clean.payload["reason"] and str(len(raw)) in clean.payload["reason"]
    assert raw.decode().startswith(clean.payload["raw"]) and _size(clean) <= MAX_MESSAGE_BYTES


def test_json_escapes_cannot_push_the_quarantine_event_over_the_limit():
    # Every control character is six bytes once JSON-escaped: 200 KiB of them would be 1.2 MB.
    event = quarantine_event("p", b"\x01" * (400 * KIB), "unreadable")
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


class _Sqs:
    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.batches.append(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def _entry_bytes(entry: dict[str, Any]) -> int:
    return sum(len(entry[k].encode()) for k in ("MessageBody", "MessageGroupId", "MessageDeduplicationId"))


def test_batches_are_split_by_size_as_well_as_by_ten_and_keep_the_order():
    sqs = _Sqs()
    events = [InboundEvent("p", f"p:{i}", "p:g", "created", {"text": "x" * (60 * KIB)}) for i in range(12)]
    events += [InboundEvent("p", f"p:small{i}", "p:g", "created", {}) for i in range(15)]
    assert EventQueue("url", sqs).send(events) == []  # type: ignore[arg-type]
    for batch in sqs.batches:
        assert len(batch) <= SQS_BATCH and sum(_entry_bytes(e) for e in batch) <= SQS_BATCH_BYTES
        assert [e["Id"] for e in batch] == [str(i) for i in range(len(batch))]
    sent = [InboundEvent.from_message(e["MessageBody"]).key for batch in sqs.batches for e in batch]
    assert sent == [e.key for e in events]
    assert [len(b) for b in sqs.batches] == [4, 4, 10, 9]  # four 60 KiB events a batch, then ten at most


def test_refused_entries_are_mapped_back_to_their_events():
    class Refusing(_Sqs):
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            super().send_message_batch(QueueUrl, Entries)
            return {"Failed": [{"Id": "1", "SenderFault": False, "Code": "InternalError"}]}

    events = [InboundEvent("p", f"p:{i}", "p:g", "created", {"text": "x" * (100 * KIB)}) for i in range(4)]
    failed = EventQueue("url", Refusing()).send(events)  # type: ignore[arg-type]
    assert [e.key for e in failed] == ["p:1", "p:3"]  # batches [0, 1] and [2, 3]
