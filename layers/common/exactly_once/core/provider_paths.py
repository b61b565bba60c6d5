"""Ids put into provider URLs: one path segment each, never a path of their own.

``quote(value, safe="")`` escapes ``/`` but leaves ``.`` and ``..`` as they are, and a client resolves
them (``/chats/../messages`` becomes ``/messages``): a chat id of ``..`` would send to another endpoint
with our credentials. ``segment`` refuses those and the empty id; ``is_segment`` lets an API answer 400
before anything is queued.
"""

from __future__ import annotations

from urllib.parse import quote

from exactly_once.core.errors import PermanentEventError

_DOT_SEGMENTS = frozenset({"", ".", ".."})


class UnsafePathSegmentError(PermanentEventError):
    """An id that cannot stand as one URL path segment ('', '.', '..'); retrying cannot fix it (quarantine)."""


def is_segment(value: str) -> bool:
    """True if ``value`` can be one path segment once percent-encoded."""
    return value not in _DOT_SEGMENTS


def segment(value: str, *, safe: str = "") -> str:
    """``value`` percent-encoded as one path segment; UnsafePathSegmentError for '', '.' and '..'."""
    if not is_segment(value):
        raise UnsafePathSegmentError(f"{value!r} cannot be a URL path segment")
    return quote(value, safe=safe)
