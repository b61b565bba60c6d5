"""Hostile text in what people read: terminal escapes, bidi overrides and separators from providers, through the
CLI's output and the log serializer, come out escaped (issue 16), and JSON stays equal to what was stored."""

from __future__ import annotations

import io
import json

from exactly_once.core.display import EscapingStream, json_text
from exactly_once.core.telemetry import logger

CORPUS = [
    "\x1b]0;pwned\x07",  # OSC title
    "\x1b]52;c;cHduZWQ=\x07",  # OSC 52: writes the operator's clipboard
    "\x1b[2J\x1b[H",  # clear screen
    "\x1b[8m hidden \x1b[0m",  # conceal
    "\x1bP+q\x1b\\",  # DCS query
    "\x9b31m",  # C1 CSI
    "\x9d0;x\x9c",  # C1 OSC / ST
    "a\rb",
    "x\x08\x08y",
    "\x7f",
    "\x00nul",
    "ok\u202etxt.exe",
    "\u2066isolate\u2069",
    "zero\u200bwidth\u200d\ufeff",
    "line\u2028sep\u2029",
    "\u0085next line",
    "lone \ud800 surrogate",
    "tag \U000e0041\U000e007f",
    "tab\there",
]


def _visible(text: str, allow: str = " ") -> bool:
    return all(c.isprintable() or c in allow for c in text)


def test_hostile_text_reaches_no_terminal_raw(proof):
    failures = []
    for text in CORPUS:
        sink = io.StringIO()
        EscapingStream(sink).write(f"row 1  {text}\n")  # what the CLI prints, line by line
        shown = json_text({"reason": text}, indent=2)  # what the CLI prints as JSON
        logged = logger.registered_formatter.serialize(log={"message": text})  # a log line
        if not _visible(sink.getvalue(), " \n"):
            failures.append(f"table {text!r}")
        if not _visible(shown, " \n") or json.loads(shown) != {"reason": text}:
            failures.append(f"json {text!r}")
        if not _visible(logged) or json.loads(logged) != {"message": text}:
            failures.append(f"log {text!r}")
    assert not failures, failures
    proof.record(
        kind="hostile",
        flow="operator output",
        name="terminal escapes in CLI output and log lines",
        cases=3 * len(CORPUS),
        held=f"{len(CORPUS)} hostile strings x (table, JSON, log line): 0 raw control characters; JSON equal",
    )
