"""WhatsApp rows in Postgres: an inbound message stored once, a delivery status that only moves forward."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg

from exactly_once.core.queries import q
from exactly_once.flows.whatsapp.messages import InboundMessage, StatusUpdate


@dataclass(frozen=True)
class StatusOutcome:
    applied: bool  # False: stale (a lower or equal rank than the stored status) or a duplicate
    inserted: bool  # the first status seen for this message


def insert_message(conn: psycopg.Connection[Any], message: InboundMessage) -> int | None:
    """Store the message; its id, or None when this wamid is already stored (a duplicate)."""
    row = conn.execute(
        q("whatsapp_message_insert"),
        {
            "wamid": message.wamid,
            "phone_number_id": message.phone_number_id,
            "waba_id": message.waba_id,
            "wa_id": message.wa_id,
            "contact_name": message.contact_name,
            "type": message.type,
            "text": message.text,
            "context_wamid": message.context_wamid,
            "sent_at": message.timestamp,
            "raw": json.dumps(message.raw, ensure_ascii=False),
        },
    ).fetchone()
    return None if row is None else int(row[0])


def apply_status(conn: psycopg.Connection[Any], update: StatusUpdate, channel: str = "whatsapp") -> StatusOutcome:
    """Move the message's delivery status forward, never back (one statement, no lock)."""
    row = conn.execute(
        q("delivery_apply"),
        {
            "provider_message_id": update.provider_message_id,
            "channel": channel,
            "phone_number_id": update.phone_number_id or None,
            "recipient_id": update.recipient_id,
            "status": update.status,
            "status_at": update.timestamp,
            "errors": _json(update.errors),
            "conversation": _json(update.conversation),
            "pricing": _json(update.pricing),
        },
    ).fetchone()
    if row is None or not row[2]:
        # Stale; or a late failure whose errors were kept while the status stayed where it was.
        return StatusOutcome(applied=False, inserted=False)
    return StatusOutcome(applied=True, inserted=bool(row[1]))


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)
