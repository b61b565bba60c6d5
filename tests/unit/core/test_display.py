"""Text for people: control and format characters from providers never reach an operator's terminal raw."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exactly_once.core.display import json_text, printable

HOSTILE = [
    "\x1b]0;pwned\x07",  # OSC: sets the terminal's title
    "\x1b[2J\x1b[H",  # CSI: clears the screen
    "\x9b31m",  # C1 CSI: the one-byte form some terminals honour
    "a\rb",  # carriage return: overwrites the start of the line
    "x\x08\x08y",  # backspaces
    "\x7f",
    "ok\u202etxt.exe",  # RTL override: shows "exe.txt"
    "zero\u200bwidth\ufeff",
    "line\u2028sep\u2029",
    "tab\there\nnewline",
    "lone \ud800 surrogate",
    "tag \U000e0041",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_printable_leaves_no_control_or_format_character(text):
    shown = printable(text)
    assert shown.isprintable() or all(c.isprintable() or c == " " for c in shown)
    shown.encode("utf-8")  # a lone surrogate would raise here, at print time


def test_printable_keeps_ordinary_text_as_it_is():
    for text in ("Zoë Ünal", "日本語", "emoji \U0001f600", "a b", "plain"):
        assert printable(text) == text


def test_printable_shows_what_was_there():
    assert printable("\x1b[2J") == "\\x1b[2J"
    assert printable("ok\u202etxt") == "ok\\u202etxt"
    assert printable("tag \U000e0041") == "tag \\U000e0041"


@pytest.mark.parametrize("text", HOSTILE)
def test_json_text_is_valid_json_with_every_control_escaped(text):
    out = json_text({"reason": text, "nested": [text]}, indent=2)
    assert json.loads(out) == {"reason": text, "nested": [text]}
    assert all(c.isprintable() or c in " \n" for c in out), repr(out)


@given(st.text())
def test_json_text_round_trips_any_text(text):
    out = json_text({"t": text})
    assert json.loads(out) == {"t": text}
    assert all(c.isprintable() or c == " " for c in out)


def test_log_lines_carry_no_raw_control_character():
    from exactly_once.core.telemetry import logger

    # the formatter the logger writes every line with (its stream is bound at import, so read the text here)
    entry = {"message": "quarantined \x1b]0;pwned\x07", "event_key": "k\u202eexe.txt\x9b2J", "reason": "a\rb"}
    line = logger.registered_formatter.serialize(log=entry)
    assert all(c.isprintable() or c == " " for c in line), repr(line)
    assert json.loads(line) == entry
