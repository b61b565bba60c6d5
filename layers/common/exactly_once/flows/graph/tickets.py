"""Mail -> ticket (or comment), exactly once, in one Postgres transaction."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors
from psycopg.types.json import Jsonb

from exactly_once.core import store
from exactly_once.core.events import InboundEvent
from exactly_once.core.queries import q
from exactly_once.flows.graph import mark_read
from exactly_once.flows.graph.client import MailMessage


@dataclass(frozen=True)
class MailOutcome:
    outcome: str  # ticket | comment | duplicate | recovered | quarantined
    row_id: int | None
    existing_kind: str = ""
    read_send: int | None = None  # the mark-as-read send queued with it, to relay after the commit


def apply_mail(conn: psycopg.Connection[Any], mail: MailMessage, event: InboundEvent, mailbox: str) -> MailOutcome:
    """Create the ticket, or the comment of a reply, unless this mail already has one."""
    marks = mark_read.enabled()
    try:
        # One statement in autocommit: one round trip, its implicit transaction holds the locks.
        # With mark-as-read on, its send row joins the same transaction.
        with conn.transaction() if marks else contextlib.nullcontext():
            row = conn.execute(q("mail_apply"), _params(mail, event, mailbox)).fetchone()
            if row is None:  # the statement always yields one row; guard for the type checker
                raise RuntimeError("statement returned no row")
            read = _mark(conn, marks, mailbox, mail, str(row[0]))
    except errors.UniqueViolation:
        return _recover(conn, mail, event)  # a constraint the statement could not absorb
    return _settled(conn, mail, event, str(row[0]), str(row[1]), row[2], read)


def apply_mails(
    conn: psycopg.Connection[Any], items: Sequence[tuple[MailMessage, InboundEvent, str]]
) -> list[MailOutcome]:
    """``apply_mail`` for several mails (an SQS batch) in one statement, one transaction, one commit.

    The same effects as applying them one by one in this order; the commit, which sets the pace
    of one-by-one effects, is paid once. A unique violation rolls the whole statement back, and
    the mails are then applied one by one, each with its own recovery.
    """
    if len(items) <= 1:
        return [apply_mail(conn, *item) for item in items]
    payload = [_params(mail, event, mailbox) for mail, event, mailbox in items]
    marks = mark_read.enabled()
    try:
        with conn.transaction() if marks else contextlib.nullcontext():
            rows = conn.execute(q("mail_apply_batch"), {"mails": Jsonb(payload)}).fetchall()
            if len(rows) != len(items):
                raise RuntimeError(f"statement returned {len(rows)} rows for {len(items)} mails")
            by_ord = {int(row[0]): row for row in rows}
            reads = [_mark(conn, marks, mailbox, mail, str(by_ord[i][1])) for i, (mail, _, mailbox) in enumerate(items)]
    except errors.UniqueViolation:
        return [apply_mail(conn, *item) for item in items]
    return [
        _settled(conn, mail, event, str(by_ord[i][1]), str(by_ord[i][2]), by_ord[i][3], reads[i])
        for i, (mail, event, _) in enumerate(items)
    ]


def _mark(conn: psycopg.Connection[Any], marks: bool, mailbox: str, mail: MailMessage, outcome: str) -> int | None:
    """The mark-as-read row of a mail this transaction has just ticketed (to relay after commit), if on."""
    if not marks or outcome not in mark_read.NEW_EFFECTS or not mail.graph_id:
        return None
    return mark_read.enqueue(conn, mailbox, mail.graph_id)


def _params(mail: MailMessage, event: InboundEvent, mailbox: str) -> dict[str, Any]:
    return {
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


def _settled(
    conn: psycopg.Connection[Any],
    mail: MailMessage,
    event: InboundEvent,
    outcome: str,
    kind: str,
    row_id: Any,
    read_send: int | None = None,
) -> MailOutcome:
    if outcome == "conflict":
        return _recover(conn, mail, event)  # the INSERT met a row its snapshot could not see
    return MailOutcome(outcome, row_id, kind, read_send)


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
