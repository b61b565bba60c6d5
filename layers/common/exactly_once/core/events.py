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

#: SQS takes 256 KiB per message (body and attributes) and per SendMessageBatch: a queued event's
#: envelope stays under this, the rest is headroom (group and deduplication ids, a replay's lineage).
MAX_MESSAGE_BYTES = 240 * 1024
#: What a quarantine event keeps of a body (or an event) too large to queue whole.
QUARANTINE_RAW_BYTES = 200 * 1024
# A reason or a key this long is provider data, not ours: the oversize quarantine event bounds them.
_MAX_REASON_BYTES = 2048
_MAX_KEY_BYTES = 1024


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


def unreadable_event(
    provider: str, raw: bytes | str, reason: str, *, key: str | None = None, group: str | None = None
) -> InboundEvent:
    """An authenticated delivery (or one item of it) nobody can process, carried to the worker's quarantine.

    The one builder of ``QUARANTINE_KIND`` events at ingest; the worker writes them with
    ``store.quarantine_event``. ``raw``: the body's bytes (undecodable bytes shown as U+FFFD) or an item's
    text. ``key``: the provider's own key when there is one, so its retries stay duplicates; else
    ``<provider>:quarantine:<sha256 of raw>``. ``group``: the entity's FIFO group when known; else one per
    provider. NUL is shown as U+FFFD (Postgres text cannot hold it).
    """
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")  # a lone surrogate stays hashable
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return InboundEvent(
        provider=provider,
        key=key or f"{provider}:quarantine:{hashlib.sha256(data).hexdigest()}",
        group=group or f"{provider}:quarantine",
        kind=QUARANTINE_KIND,
        payload={"raw": text.replace("\x00", "\ufffd"), "reason": reason},
    )


# What SQS and Postgres cannot carry: NUL (text and jsonb refuse it; JSON escapes it as \u0000, after
# an even run of backslashes) and lone surrogates (not encodable as UTF-8). Adapters parse their own
# bodies, so the pipeline makes every event storable once, before dedup: the same input always
# becomes the same event (stable keys), and it is settled or quarantined instead of failing forever.
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(event: InboundEvent) -> InboundEvent:
    """The event with NUL and lone surrogates replaced by U+FFFD; a quarantine event if JSON cannot carry it,
    or if its message would be larger than SQS takes (``MAX_MESSAGE_BYTES``)."""
    try:
        text = json.dumps(asdict(event), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        return _unstorable(event, "payload holds NaN or Infinity, which JSON cannot carry")
    except RecursionError:
        return _unstorable(event, "payload nests too deeply to carry")
    if "\\u0000" in text or _SURROGATE.search(text):
        text = _SURROGATE.sub("\ufffd", _NUL_ESCAPE.sub(r"\1\\ufffd", text))
        event = InboundEvent.from_message(text)
    # A character is at most 4 UTF-8 bytes: only a long text needs encoding to be measured.
    if len(text) * 4 > MAX_MESSAGE_BYTES and (size := len(text.encode("utf-8"))) > MAX_MESSAGE_BYTES:
        return _oversize(event, size)
    return event


def _utf8_prefix(text: str, limit: int) -> str:
    """The longest prefix of ``text`` of at most ``limit`` UTF-8 bytes (never half a character)."""
    data = text.encode("utf-8", "surrogatepass")[: max(0, limit)]
    for cut in range(4):  # a UTF-8 character is at most 4 bytes: drop a partial one at the end
        try:
            return data[: len(data) - cut].decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", "ignore")  # not reached: the bytes came from encoding a str


def _oversize(event: InboundEvent, size: int) -> InboundEvent:
    """An event too large to queue, as a quarantine event that fits: the first bytes of its raw text,
    the whole text's size and sha256 in the reason, the same key (the provider's retries stay duplicates)."""
    raw = event.payload.get("raw") if event.kind == QUARANTINE_KIND else None
    if isinstance(raw, str):  # already a quarantine event: keep its reason, shorten its raw body
        reason = str(event.payload.get("reason") or "unprocessable delivery")
        group = event.group
    else:
        raw = json.dumps(event.payload, ensure_ascii=False)
        reason = f"{event.kind!r} event too large to queue"
        group = f"{event.provider}:quarantine"
    if len(reason.encode("utf-8")) > _MAX_REASON_BYTES:
        reason = _utf8_prefix(reason, _MAX_REASON_BYTES) + "\u2026"
    if len(group.encode("utf-8")) > _MAX_KEY_BYTES:
        group = f"{event.provider}:quarantine"
    key = event.key
    if len(key.encode("utf-8")) > _MAX_KEY_BYTES:  # stable: the same key always hashes the same
        key = f"{event.provider}:quarantine:key-sha256:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"
    data = raw.encode("utf-8")
    whole = f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}"
    limit = QUARANTINE_RAW_BYTES
    while True:
        kept = _utf8_prefix(raw, limit)
        note = f"message of {size} bytes is over the {MAX_MESSAGE_BYTES}-byte queue limit; raw truncated to the first "
        note += f"{len(kept.encode('utf-8'))} of {whole}"
        candidate = InboundEvent(
            event.provider,
            key,
            group,
            QUARANTINE_KIND,
            {"raw": kept, "reason": f"{reason} ({note})"},
            received_at=event.received_at,
            replay=event.replay,
        )
        length = len(candidate.to_message().encode("utf-8"))
        if length <= MAX_MESSAGE_BYTES or not kept:
            return candidate
        # JSON escapes (quotes, backslashes, control characters) made it longer than the raw text: shrink.
        limit = min(limit - 1024, limit * MAX_MESSAGE_BYTES // length - 1024)


def _unstorable(event: InboundEvent, reason: str) -> InboundEvent:
    try:
        raw = json.dumps(event.payload, ensure_ascii=True, default=str)  # NaN stays readable text
    except RecursionError:
        raw = reprlib.repr(event.payload)
    key = _SURROGATE.sub("\ufffd", event.key.replace("\x00", "\ufffd"))
    return InboundEvent(
        event.provider, key, f"{event.provider}:quarantine", QUARANTINE_KIND, {"raw": raw, "reason": reason}
    )
