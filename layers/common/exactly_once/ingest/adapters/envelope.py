"""Reading an authenticated delivery and keying its events.

FIFO groups come from ``core.fifo.group_id`` and the quarantine fallback from ``core.events.unreadable_event``:
one rule each, shared with the queue and the pipeline.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import parse_qs

from exactly_once.ingest.apigw import Request

#: Longest provider id we put in a key as is; longer ones are hashed (keys land in DynamoDB and Postgres).
MAX_ID = 256


def body_digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def id_part(value: object) -> str | None:
    """A provider id usable in a dedup key: a non-empty string (hashed when very long), else None."""
    if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
        return None
    text = str(value)
    return text if len(text) <= MAX_ID else "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (optional nested objects)."""
    return value if isinstance(value, dict) else {}


def json_object(raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None (the caller quarantines what it authenticated but cannot read)."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def form_fields(raw: bytes) -> dict[str, str]:
    """``application/x-www-form-urlencoded`` fields (first value of each)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


def media_type(request: Request) -> str:
    return (request.header("content-type") or "").split(";", 1)[0].strip().lower()
