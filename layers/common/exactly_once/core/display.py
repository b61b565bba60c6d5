"""Text for people: what a provider or a sender wrote, shown without its control characters.

Provider ids, quarantine reasons and error texts reach an operator's terminal (the CLI) and log lines
read with ``aws logs tail``. Raw, ``ESC ] 0 ;`` retitles the terminal, ``ESC [ 2 J`` clears it, a
carriage return overwrites the line, U+202E turns ``txt.exe`` around (issue 16). Every character
Python does not call printable, except the space, is shown as its escape instead: ``\\x1b``,
``\\u202e``, ``\\U000e0041``. Ordinary text, accents and emoji included, is left as it is.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO, cast


def _visible(ch: str) -> bool:
    return ch.isprintable() or ch == " "


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # outside the BMP JSON has only surrogate pairs
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def printable(value: object) -> str:
    """``str(value)`` with every non-printable character (the space aside) written as its escape."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if _visible(ch) else _escape(ch) for ch in text)


def json_text(value: Any, **dumps: Any) -> str:
    """``json.dumps`` (``ensure_ascii=False``, readable) whose strings carry no raw control character.

    json.dumps escapes C0 itself; the rest (DEL, C1, bidi and zero-width marks, line separators, lone
    surrogates) only occur inside strings, so writing them as ``\\uXXXX`` keeps the JSON valid and equal.
    """
    text = json.dumps(value, ensure_ascii=False, **dumps)
    if text.isprintable():
        return text
    return "".join(ch if _visible(ch) or ch == "\n" else _json_escape(ch) for ch in text)


class EscapingStream:
    """A text stream that writes each line through ``printable`` (line breaks stay line breaks)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write("\n".join(printable(line) for line in text.split("\n")))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def escaped_output() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` escaped for the duration: for command-line entry points."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = cast(TextIO, EscapingStream(out)), cast(TextIO, EscapingStream(err))
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err


__all__ = ["EscapingStream", "escaped_output", "json_text", "printable"]
