"""The envelope every accepted webhook event travels in, from ingest to worker."""

from __future__ import annotations

import hashlib
import json
import re
import reprlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any

# Kind of an event an adapter could authenticate but not understand: the worker
# stores it in quarantine with the raw body and the reason, so nothing is lost.
QUARANTINE_KIND = "quarantine"


@dataclass(frozen=True)
class InboundEvent:
    """One provider event, split out of a webhook delivery."""

    provider: str
    key: str  # the dedup key: stable across the provider's re-deliveries
    group: str  # the FIFO message group: the entity whose events must stay in order
    kind: str  # the provider's event type
    payload: dict[str, Any]
    received_at: float = field(default_factory=time.time)
    replay: dict[str, Any] | None = None  # lineage when an operator replays the event on purpose

    @property
    def dedup_id(self) -> str:
        """SQS MessageDeduplicationId: at most 128 characters, so a hash of the key.

        A replay gets an id of its own (the key plus when it was asked for): the FIFO queue
        must not swallow it as a re-delivery of the event it replays.
        """
        basis = self.key if not self.replay else f"{self.key}#replay@{self.replay.get('at', '')}"
        return hashlib.sha256(basis.encode()).hexdigest()

    def to_message(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_message(cls, body: str) -> InboundEvent:
        data = json.loads(body)
        return cls(
            provider=str(data["provider"]),
            key=str(data["key"]),
            group=str(data["group"]),
            kind=str(data["kind"]),
            payload=dict(data["payload"]),
            received_at=float(data.get("received_at") or time.time()),
            replay=data.get("replay"),
        )


def quarantine_event(provider: str, raw_body: bytes, reason: str, group: str | None = None) -> InboundEvent:
    """An authenticated delivery that cannot be processed, carried to the worker's quarantine."""
    digest = hashlib.sha256(raw_body).hexdigest()
    return InboundEvent(
        provider=provider,
        key=f"{provider}:quarantine:{digest}",
        group=group or f"{provider}:quarantine",
        kind=QUARANTINE_KIND,
        payload={"raw": raw_body.decode("utf-8", "replace").replace("\x00", "\ufffd"), "reason": reason},
    )


# What SQS and Postgres cannot carry: NUL (text and jsonb refuse it; JSON escapes it as \u0000, after
# an even run of backslashes) and lone surrogates (not encodable as UTF-8). Adapters parse their own
# bodies, so the pipeline makes every event storable once, before dedup: the same input always
# becomes the same event (stable keys), and it is settled or quarantined instead of failing forever.
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(event: InboundEvent) -> InboundEvent:
    """The event with NUL and lone surrogates replaced by U+FFFD; a quarantine event if JSON cannot carry it."""
    try:
        text = json.dumps(asdict(event), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        return _unstorable(event, "payload holds NaN or Infinity, which JSON cannot carry")
    except RecursionError:
        return _unstorable(event, "payload nests too deeply to carry")
    if "\\u0000" not in text and not _SURROGATE.search(text):
        return event
    return InboundEvent.from_message(_SURROGATE.sub("\ufffd", _NUL_ESCAPE.sub(r"\1\\ufffd", text)))


def _unstorable(event: InboundEvent, reason: str) -> InboundEvent:
    try:
        raw = json.dumps(event.payload, ensure_ascii=True, default=str)  # NaN stays readable text
    except RecursionError:
        raw = reprlib.repr(event.payload)
    key = _SURROGATE.sub("\ufffd", event.key.replace("\x00", "\ufffd"))
    return InboundEvent(
        event.provider, key, f"{event.provider}:quarantine", QUARANTINE_KIND, {"raw": raw, "reason": reason}
    )
