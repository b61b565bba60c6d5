"""events.storable and queue.group_id: what SQS and Postgres cannot carry never reaches them."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from exactly_once.core.events import QUARANTINE_KIND, InboundEvent, storable
from exactly_once.core.fifo import group_id


def _event(payload, key="p:k"):
    return InboundEvent("p", key, "p:g", "created", payload)


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


@given(st.text(min_size=1, max_size=300))
def test_group_ids_are_what_sqs_fifo_accepts_and_stable(group):
    gid = group_id(group)
    assert 1 <= len(gid) <= 128 and all("!" <= c <= "~" for c in gid)
    assert group_id(group) == gid
