"""Numbers read from text someone else wrote (headers, provider answers): ASCII digits only.

``int()`` and ``str.isdigit()`` accept every Unicode digit (``"²".isdigit()`` is True, ``int("²")``
raises, ``int("٣")`` is 3): a header parsed with them either crashes the handler (a 5xx) or means
something the sender did not write. Every numeric header goes through ``ascii_int``.
"""

from __future__ import annotations


def ascii_int(text: str | None, *, max_digits: int = 12) -> int | None:
    """The non-negative integer ``text`` spells in ASCII digits (spaces around allowed), else None."""
    if text is None:
        return None
    value = text.strip()
    if not value or len(value) > max_digits or not (value.isascii() and value.isdigit()):
        return None
    return int(value)
