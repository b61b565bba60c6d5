"""Mail -> ticket (or comment), exactly once, in one Postgres transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors

from exactly_once import store
from exactly_once.events import InboundEvent
from exactly_once.graph_client import MailMessage
from exactly_once.queries import q


@dataclass(frozen=True)
class MailOutcome:
    outcome: str  # ticket | comment | duplicate | recovered | quarantined
    row_id: int | None
    existing_kind: str = ""


def apply_mail(conn: psycopg.Connection[Any], mail: MailMessage, event: InboundEvent, mailbox: str) -> MailOutcome:
    """Create the ticket, or the comment of a reply, unless this mail already has one."""
    params = {
        "thread": mail.conversation_id or mail.internet_message_id,
        "message_id": mail.internet_message_id,
        "references": list(mail.references),
        "conversation_id": mail.conversation_id,
        "mailbox": mailbox,
        "graph_message_id": mail.graph_id,
        "subject": mail.subject,
        "sender": mail.sender,
        "preview": mail.preview,
        "event_key": event.key,
        "kind": event.kind,
        "replay_of": (event.replay or {}).get("original_key"),
    }
    try:
        # One statement in autocommit: one round trip, its implicit transaction holds the locks.
        row = conn.execute(q("mail_apply"), params).fetchone()
    except errors.UniqueViolation:
        return _recover(conn, mail, event)  # a constraint the statement could not absorb
    if row is None:  # the statement always yields one row; guard for the type checker
        raise RuntimeError("statement returned no row")
    outcome, existing_kind, row_id = str(row[0]), str(row[1]), row[2]
    if outcome == "conflict":
        return _recover(conn, mail, event)  # the INSERT met a row its snapshot could not see
    return MailOutcome(outcome, row_id, existing_kind)


def _recover(conn: psycopg.Connection[Any], mail: MailMessage, event: InboundEvent) -> MailOutcome:
    """A unique violation: the winner's row is this mail's effect; without one, quarantine."""
    with conn.transaction():
        row = conn.execute(q("mail_find"), {"message_id": mail.internet_message_id}).fetchone()
        if row is not None:
            store.record_event(conn, event, "recovered", row[1], keep_payload=False)
            return MailOutcome("recovered", int(row[1]), str(row[0]))
        qid, _ = store.quarantine(
            conn,
            provider="graph",
            event_key=event.key,
            external_id=mail.internet_message_id,
            reason="unique violation that does not resolve to an existing ticket or comment",
            raw=json.dumps(event.payload, ensure_ascii=False),
            envelope=event.to_message(),
        )
        store.record_event(conn, event, "quarantined", qid, keep_payload=False)
        return MailOutcome("quarantined", qid)
