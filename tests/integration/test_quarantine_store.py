"""Quarantine keeps what providers send, even what Postgres text cannot hold."""

from __future__ import annotations

import json

from exactly_once.core import store
from exactly_once.core.events import InboundEvent


def test_a_payload_with_nul_characters_is_still_quarantined_with_its_exact_envelope(db):
    event = InboundEvent("whatsapp", "k-nul", "g", "quarantine", {"raw": "a\x00b", "reason": "broken"})
    qid = store.quarantine_event(db, event, "unreadable")
    raw, envelope = db.execute("SELECT raw, envelope FROM quarantine WHERE id = %s", (qid,)).fetchone()
    assert raw == "a\ufffdb"
    assert InboundEvent.from_message(envelope).payload["raw"] == "a\x00b"
    assert json.loads(envelope)["key"] == "k-nul"


def test_quarantining_the_same_event_twice_keeps_one_row_and_counts_attempts(db):
    event = InboundEvent("graph", "k-twice", "g", "quarantine", {"raw": "{}", "reason": "x"})
    first = store.quarantine_event(db, event, "first")
    second = store.quarantine_event(db, event, "second")
    assert first == second
    assert db.execute("SELECT attempts, reason FROM quarantine").fetchone() == (2, "second")
