"""WhatsApp inbound messages and delivery statuses, read from the events the adapter split out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exactly_once.core.errors import PermanentEventError

#: Statuses Meta sends for a business's outbound messages (``failed`` carries ``errors[]``).
DELIVERY_STATUSES = frozenset({"sent", "delivered", "read", "played", "failed"})
#: Message types whose text a responder can read; every other type is stored without one.
_MEDIA_TYPES = ("image", "video", "document", "audio", "sticker")
_YEAR_3000 = 32_503_680_000


@dataclass(frozen=True)
class InboundMessage:
    """One customer message, as a responder sees it."""

    wamid: str
    phone_number_id: str  # the business number it was sent to (the reply goes out from it)
    wa_id: str  # the customer
    type: str
    text: str | None
    contact_name: str | None = None
    waba_id: str | None = None
    context_wamid: str | None = None  # the message it replies to, if any
    timestamp: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class StatusUpdate:
    """A delivery status of one outbound message."""

    provider_message_id: str
    status: str
    phone_number_id: str
    recipient_id: str | None
    timestamp: int | None
    errors: list[Any] | None
    conversation: dict[str, Any] | None
    pricing: dict[str, Any] | None


def parse_message(payload: dict[str, Any]) -> InboundMessage:
    """The message of a ``message:*`` event; PermanentEventError if it cannot be read."""
    payload = without_nul(payload)
    message = payload.get("message")
    metadata = payload.get("metadata")
    if not isinstance(message, dict) or not isinstance(metadata, dict):
        raise PermanentEventError("message event lacks message or metadata")
    wamid, sender = message.get("id"), message.get("from")
    phone_number_id = metadata.get("phone_number_id")
    if not (isinstance(wamid, str) and wamid and isinstance(sender, str) and sender and phone_number_id):
        raise PermanentEventError("message lacks id, from or metadata.phone_number_id")
    contact = _dict(payload.get("contact"))
    profile = _dict(contact.get("profile"))
    context = _dict(message.get("context"))
    kind = str(message.get("type") or "unknown")
    return InboundMessage(
        wamid=wamid,
        phone_number_id=str(phone_number_id),
        wa_id=sender,
        type=kind,
        text=message_text(kind, message),
        contact_name=_str(profile.get("name")),
        waba_id=_str(payload.get("waba_id")),
        context_wamid=_str(context.get("id")),
        timestamp=_timestamp(message.get("timestamp")),
        raw={"message": message, "contact": contact or None},
    )


def message_text(kind: str, message: dict[str, Any]) -> str | None:
    """The human-readable text a message type carries, if any."""
    part = _dict(message.get(kind))
    if kind == "text":
        return _str(part.get("body"))
    if kind in _MEDIA_TYPES:
        return _str(part.get("caption"))
    if kind == "button":
        return _str(part.get("text"))
    if kind == "interactive":
        reply = part.get("button_reply") or part.get("list_reply") or {}
        return _str(reply.get("title")) if isinstance(reply, dict) else None
    if kind == "reaction":
        return _str(part.get("emoji"))
    return None


def parse_status(payload: dict[str, Any]) -> StatusUpdate:
    """The status of a ``status:*`` event; PermanentEventError if it cannot be read."""
    payload = without_nul(payload)
    status = payload.get("status")
    metadata = _dict(payload.get("metadata"))
    if (
        not isinstance(status, dict)
        or not isinstance(status.get("id"), str)
        or not isinstance(status.get("status"), str)
    ):
        raise PermanentEventError("status event lacks status.id or status.status")
    errors = status.get("errors")
    return StatusUpdate(
        provider_message_id=status["id"],
        status=status["status"],
        phone_number_id=str(metadata.get("phone_number_id") or ""),
        recipient_id=_str(status.get("recipient_id")),
        timestamp=_timestamp(status.get("timestamp")),
        errors=errors if isinstance(errors, list) else None,
        conversation=_dict(status.get("conversation")) or None,
        pricing=_dict(status.get("pricing")) or None,
    )


def without_nul(value: Any) -> Any:
    """NUL characters replaced by U+FFFD: Postgres stores neither in text nor in jsonb, and one must not
    keep a customer's message (or its reply) out of the database."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _timestamp(value: Any) -> int | None:
    """Unix seconds, or None when absent or outside what Postgres stores (a bad value must not poison the event)."""
    try:
        seconds = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds if 0 <= seconds < _YEAR_3000 else None
