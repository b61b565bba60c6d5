"""Unipile messaging events -> each LinkedIn message recorded once, inbound told apart from our own.

Unipile sends ``message_received`` for every new message of a chat, including
the ones the connected account wrote itself (from LinkedIn, another device, or
our own send queue). ``is_sender`` says so when present; otherwise the sender's
``attendee_provider_id`` is compared with ``account_info.user_id`` (the
account's own LinkedIn id). A message whose direction cannot be told goes to
quarantine: answering our own message as if a prospect wrote it is the bug
this avoids. Other events (reads, reactions, account status) are recorded in
the event log only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from exactly_once.core import db, store
from exactly_once.core.crash import crashpoint
from exactly_once.core.errors import PermanentEventError
from exactly_once.core.events import InboundEvent
from exactly_once.core.queries import q
from exactly_once.core.telemetry import Metric, counters, logger

MESSAGE_EVENTS = frozenset({"message_received"})
LINKEDIN = "LINKEDIN"


@dataclass(frozen=True)
class LinkedInMessage:
    account_id: str
    message_id: str
    chat_id: str | None
    direction: str  # inbound | outbound
    sender_id: str | None
    sender_name: str | None
    body: str
    sent_at: datetime | None


def direction_of(payload: dict[str, Any]) -> str:
    """``outbound`` when the connected account wrote the message, ``inbound`` when someone else did."""
    is_sender = payload.get("is_sender")
    if isinstance(is_sender, bool):
        return "outbound" if is_sender else "inbound"
    sender, account = _dict(payload.get("sender")), _dict(payload.get("account_info"))
    sender_id, own_id = sender.get("attendee_provider_id"), account.get("user_id")
    if not sender_id or not own_id:
        raise PermanentEventError("cannot tell who sent the message: no is_sender, sender or account_info.user_id")
    return "outbound" if str(sender_id) == str(own_id) else "inbound"


def parse_message(payload: dict[str, Any]) -> LinkedInMessage:
    account_id, message_id = payload.get("account_id"), payload.get("message_id")
    if not isinstance(account_id, str) or not account_id or not isinstance(message_id, str) or not message_id:
        raise PermanentEventError("message event without account_id or message_id")
    sender = _dict(payload.get("sender"))
    text = payload.get("message")
    return LinkedInMessage(
        account_id=account_id,
        message_id=message_id,
        chat_id=str(payload["chat_id"]) if payload.get("chat_id") else None,
        direction=direction_of(payload),
        sender_id=_text(sender.get("attendee_provider_id")),
        sender_name=_text(sender.get("attendee_name")),
        body=text if isinstance(text, str) else "",
        sent_at=_timestamp(payload.get("timestamp")),
    )


def process(event: InboundEvent) -> str:
    conn = db.connection()
    account_type = str(event.payload.get("account_type") or LINKEDIN).upper()
    if event.kind not in MESSAGE_EVENTS or account_type != LINKEDIN:
        return _record_only(event)
    message = parse_message(event.payload)
    params = {**asdict(message), "event_key": event.key}
    with conn.transaction():
        row = conn.execute(q("linkedin_message_record"), params).fetchone()
        row_id: int | None
        if row is not None:
            outcome, row_id = message.direction, int(row[0])
        else:
            found = conn.execute(q("linkedin_message_find"), params).fetchone()
            outcome, row_id = "duplicate", (int(found[0]) if found else None)
        store.record_event(conn, event, outcome, row_id, keep_payload=False)
        crashpoint("unipile.worker.before_commit")
    crashpoint("unipile.worker.after_commit")
    if outcome == "duplicate":
        counters.incr("unipile", Metric.DUP_DATABASE)
        logger.info("duplicate stopped", extra={"layer": "linkedin_messages", "message_id": message.message_id})
    else:
        counters.incr("unipile", Metric.EFFECTS)
        logger.info("linkedin message recorded", extra={"direction": outcome, "message_id": message.message_id})
    return outcome


def _record_only(event: InboundEvent) -> str:
    with db.connection().transaction() as tx:
        deliveries = store.record_event(tx.connection, event, "recorded")
    if deliveries > 1:
        counters.incr("unipile", Metric.DUP_DATABASE)
        return "duplicate"
    return "recorded"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and value != "" else None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else None
