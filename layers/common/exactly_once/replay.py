"""Quarantine review: list, show, resolve, and replay an event through the same code path on purpose.

A replay re-sends the quarantined event, as it travelled on the events queue, with a
``replay`` marker (original key, who, when, the quarantine and replay_log ids):

* SQS FIFO: the marker gives the message a dedup id of its own (``InboundEvent.dedup_id``),
  so the queue does not swallow it as a re-delivery;
* the worker's event-log check lets it through (``store.already_settled``);
* the effect's own guarantees still hold: the same key, the same advisory locks, claims and
  unique constraints decide, so a replay of an event whose effect exists is a duplicate, not a
  second effect;
* lineage: the quarantine row becomes ``replayed`` (handled_by/at), ``replay_log`` keeps who,
  when, why, the outcome before and the outcome the worker settled it with, and
  ``event_log.replay_of`` marks the event as settled by a replay.

The quarantine row is marked before the event is sent: a Graph mail whose quarantine row is
still ``open`` counts as already handled (``mail_apply`` checks it), so the order matters.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from exactly_once.errors import ExactlyOnceError
from exactly_once.events import QUARANTINE_KIND, InboundEvent
from exactly_once.queries import q

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

REPLAYABLE = ("open",)


class QuarantineNotFoundError(ExactlyOnceError):
    """No quarantine row has this id."""


class NotReplayableError(ExactlyOnceError):
    """The row cannot be replayed as it is (wrong status, or no event to re-send)."""


class ReplayNotSentError(ExactlyOnceError):
    """The events queue refused the replay; the quarantine row is open again."""


@dataclass(frozen=True)
class Replayed:
    quarantine_id: int
    replay_id: int
    event_key: str
    previous_outcome: str | None
    queue_message_id: str


def list_rows(
    conn: psycopg.Connection[Any], *, status: str | None = "open", provider: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    cur = conn.execute(q("ops_quarantine_list"), {"status": status, "provider": provider, "limit": limit})
    return _dicts(cur)


def show(conn: psycopg.Connection[Any], quarantine_id: int) -> dict[str, Any]:
    rows = _dicts(conn.execute(q("ops_quarantine_get"), {"id": quarantine_id}))
    if not rows:
        raise QuarantineNotFoundError(f"no quarantine row {quarantine_id}")
    row = rows[0]
    row["replays"] = _dicts(
        conn.execute(q("ops_trace_replays"), {"event_key": row["event_key"], "provider": row["provider"]})
    )
    return row


def resolve(conn: psycopg.Connection[Any], quarantine_id: int, *, by: str, note: str) -> dict[str, Any]:
    """Close a row by hand (the operator fixed it elsewhere, or it needs nothing)."""
    with conn.transaction():
        row = conn.execute(q("ops_quarantine_lock"), {"id": quarantine_id}).fetchone()
        if row is None:
            raise QuarantineNotFoundError(f"no quarantine row {quarantine_id}")
        conn.execute(q("ops_quarantine_handle"), {"id": quarantine_id, "status": "resolved", "note": note, "by": by})
    return show(conn, quarantine_id)


def event_to_replay(
    conn: psycopg.Connection[Any], row: dict[str, Any], payload: dict[str, Any] | None = None
) -> InboundEvent:
    """The event a quarantine row holds: its envelope, else rebuilt from the raw input and the event log.

    ``payload`` replaces the event's payload: an operator's corrected copy of what the provider sent.
    """
    envelope = row.get("envelope")
    if isinstance(envelope, str):
        envelope = json.loads(envelope)
    if isinstance(envelope, dict):
        event = InboundEvent.from_message(json.dumps(envelope))
    else:
        seen = conn.execute(
            q("ops_event_outcome"), {"provider": row["provider"], "event_key": row["event_key"]}
        ).fetchone()
        if seen is None:
            raise NotReplayableError(
                f"quarantine row {row['id']} holds no queued event (no envelope, no event log entry): "
                "fix the cause in its flow, then resolve it"
            )
        try:
            raw = json.loads(row["raw"])
        except ValueError as exc:
            raise NotReplayableError(f"quarantine row {row['id']}: raw input is not JSON") from exc
        if not isinstance(raw, dict):
            raise NotReplayableError(f"quarantine row {row['id']}: raw input is not a JSON object")
        # Without the envelope the message group is lost: a group of its own keeps the replay in order with itself.
        event = InboundEvent(row["provider"], row["event_key"], f"{row['provider']}:replay", str(seen[0]), raw)
    if payload is not None:
        event = InboundEvent(event.provider, event.key, event.group, event.kind, payload, event.received_at)
    if event.kind == QUARANTINE_KIND:
        raise NotReplayableError(
            f"quarantine row {row['id']} is a delivery the adapter could not read ({row['provider']}): "
            "the provider will not send it differently; resolve it with a note"
        )
    return event


def replay(
    conn: psycopg.Connection[Any],
    sqs: SQSClient,
    queue_url: str,
    quarantine_id: int,
    *,
    by: str,
    note: str | None = None,
    payload: dict[str, Any] | None = None,
) -> Replayed:
    """Mark the row replayed, record the replay, then put the event back on the events queue."""
    with conn.transaction():
        found = _dicts(conn.execute(q("ops_quarantine_lock"), {"id": quarantine_id}))
        if not found:
            raise QuarantineNotFoundError(f"no quarantine row {quarantine_id}")
        row = found[0]
        if row["status"] not in REPLAYABLE:
            raise NotReplayableError(f"quarantine row {quarantine_id} is {row['status']}, not open")
        event = event_to_replay(conn, row, payload)
        seen = conn.execute(q("ops_event_outcome"), {"provider": event.provider, "event_key": event.key}).fetchone()
        previous = None if seen is None else str(seen[1])
        replay_id, at = conn.execute(
            q("ops_replay_insert"),
            {
                "quarantine_id": quarantine_id,
                "provider": event.provider,
                "event_key": event.key,
                "previous_outcome": previous,
                "by": by,
                "note": note,
            },
        ).fetchone() or (None, None)
        if replay_id is None or not isinstance(at, dt.datetime):
            raise ExactlyOnceError("replay_log insert returned no row")
        conn.execute(q("ops_quarantine_handle"), {"id": quarantine_id, "status": "replayed", "note": note, "by": by})
    marked = InboundEvent(
        event.provider,
        event.key,
        event.group,
        event.kind,
        event.payload,
        event.received_at,
        replay={
            "original_key": event.key,
            "by": by,
            "at": at.isoformat(),
            "quarantine_id": quarantine_id,
            "replay_id": replay_id,
        },
    )
    try:
        sent = sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=marked.to_message(),
            MessageGroupId=marked.group[:128],
            MessageDeduplicationId=marked.dedup_id,
        )
    except (BotoCoreError, ClientError) as exc:
        conn.execute(q("ops_replay_not_sent"), {"id": replay_id})
        raise ReplayNotSentError(f"the events queue refused the replay: {exc}") from exc
    message_id = str(sent.get("MessageId") or "")
    conn.execute(q("ops_replay_sent"), {"id": replay_id, "message_id": message_id})
    return Replayed(quarantine_id, int(replay_id), event.key, previous, message_id)


def settled(conn: psycopg.Connection[Any], event: InboundEvent, outcome: str) -> None:
    """The worker settled a replay: record its outcome next to who asked for it."""
    replay_id = (event.replay or {}).get("replay_id")
    if replay_id is None:
        return
    conn.execute(
        q("ops_replay_settled"),
        {"id": int(replay_id), "provider": event.provider, "event_key": event.key, "outcome": outcome},
    )


def _dicts(cur: psycopg.Cursor[Any]) -> list[dict[str, Any]]:
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
