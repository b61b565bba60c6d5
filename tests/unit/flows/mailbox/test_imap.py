"""The IMAP client's search window."""

from __future__ import annotations

from datetime import UTC, datetime

from exactly_once.flows.mailbox.imap import search_since


def test_imap_search_starts_a_day_before_the_last_check():
    assert search_since(datetime(2026, 3, 1, 0, 30, tzinfo=UTC), 7) == "28-Feb-2026"
