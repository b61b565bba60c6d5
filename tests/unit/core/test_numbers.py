"""Numbers in headers: ASCII digits only, everywhere one is read."""

from __future__ import annotations

import pytest

from exactly_once.core.numbers import ascii_int
from exactly_once.core.outbound_http import _retry_after


@pytest.mark.parametrize(("text", "value"), [("0", 0), (" 42 ", 42), ("007", 7), ("123456789012", 123456789012)])
def test_ascii_digits_are_read(text, value):
    assert ascii_int(text) == value


@pytest.mark.parametrize(
    "text", [None, "", " ", "²", "٣", "\uff11\uff12", "-1", "+1", "1.5", "1e3", "nan", "1 2", "1234567890123"]
)
def test_anything_else_is_none(text):
    assert ascii_int(text) is None


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("٣", None), ("nan", None), ("1e3", None), ("²", None)])
def test_retry_after_reads_delta_seconds_in_ascii_digits_only(header, seconds):
    # float() took "٣" as 3 and "nan" as a wait; an HTTP date is still read (tested with the client)
    assert _retry_after(header) == seconds
