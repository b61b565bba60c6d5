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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from exactly_once.core.crash import crashpoint
from exactly_once.core.errors import ExactlyOnceError
from exactly_once.core.events import QUARANTINE_KIND, InboundEvent
from exactly_once.core.fifo import group_id
from exactly_once.core.queries import q
from exactly_once.providers import PROVIDERS

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
    quarantine_id: int | None  # None: a replay from the dead-letter queue
    replay_id: int
    event_key: str
    previous_outcome: str | None
    queue_message_id: str


def list_rows(
    conn: psycopg.Connection[Any],
    *,
    status: str | None = "open",
    provider: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """Newest first; ``before_id`` pages on (the console passes the last id it showed)."""
    cur = conn.execute(
        q("ops_quarantine_list"), {"status": status, "provider": provider, "limit": limit, "before_id": before_id}
    )
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
        if str(row[2]).startswith("send:"):
            # The send row is in review too: settling only this row would leave the send stuck there.
            raise NotReplayableError(
                f"quarantine row {quarantine_id} is a send in review: settle it with "
                f"`exactly-once send resolve {str(row[2]).removeprefix('send:')} sent|resend|drop --note ...`"
            )
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
    rebuild = _rebuilder(event.provider)
    if payload is not None and event.kind == QUARANTINE_KIND and rebuild is not None:
        # The adapter could not read the item: the corrected item goes through the adapter again.
        try:
            event = rebuild(payload)
        except ValueError as exc:
            raise NotReplayableError(str(exc)) from exc
        if event.kind == QUARANTINE_KIND:
            raise NotReplayableError(f"the corrected payload is still unreadable: {event.payload.get('reason')}")
    elif payload is not None:
        event = InboundEvent(event.provider, event.key, event.group, event.kind, payload, event.received_at)
    if event.kind == QUARANTINE_KIND:
        raise NotReplayableError(
            f"quarantine row {row['id']} is a delivery the adapter could not read ({row['provider']}): "
            + (
                "replay it with --payload, a corrected copy of the item"
                if _rebuilder(row["provider"]) is not None
                else "the provider will not send it differently; resolve it with a note"
            )
        )
    return event


def _rebuilder(provider: str) -> Callable[[dict[str, Any]], InboundEvent] | None:
    """The provider's rebuilder of a corrected item, for rows its adapter could not read (``Provider.rebuild``)."""
    declared = PROVIDERS.get(provider)
    return None if declared is None or declared.rebuild is None else cast(Any, declared.rebuild.load())


def replay(
    conn: psycopg.Connection[Any],
    sqs: SQSClient,
    queue_url: str,
    quarantine_id: int,
    *,
    by: str,
    note: str | None = None,
    payload: dict[str, Any] | None = None,
    force: bool = False,
) -> Replayed:
    """Mark the row replayed, record the replay, then put the event back on the events queue.

    ``force`` also replays a row already ``replayed``: for a replay interrupted between its commit
    and its send (``replay_log.queue_message_id`` empty). Sending twice is harmless: the effect's
    guarantees settle the second copy.
    """
    with conn.transaction():
        found = _dicts(conn.execute(q("ops_quarantine_lock"), {"id": quarantine_id}))
        if not found:
            raise QuarantineNotFoundError(f"no quarantine row {quarantine_id}")
        row = found[0]
        if row["status"] not in REPLAYABLE and not (force and row["status"] == "replayed"):
            hint = " (--force replays it again)" if row["status"] == "replayed" else ""
            raise NotReplayableError(f"quarantine row {quarantine_id} is {row['status']}, not open{hint}")
        event = event_to_replay(conn, row, payload)
        conn.execute(q("ops_quarantine_handle"), {"id": quarantine_id, "status": "replayed", "note": note, "by": by})
        # In the same transaction: a row marked replayed always has its replay_log entry.
        record = _record_replay(conn, event, quarantine_id, by=by, note=note, original_key=row["event_key"])
    # Sent after the commit: the worker must find the row already replayed (see the module docstring).
    crashpoint("ops.replay.after_mark")
    return _send_replay(conn, sqs, queue_url, event, record)


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    receive_count: int
    event: InboundEvent | None  # None: the body is not an event this bundle wrote
    body: str


def dead_letters(sqs: SQSClient, dlq_url: str, limit: int = 10) -> list[DeadLetter]:
    """A look at the DLQ without taking anything: the messages come back visible at once."""
    found: list[DeadLetter] = []
    seen: set[str] = set()
    while len(found) < limit:
        got = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=min(10, limit - len(found)),
            VisibilityTimeout=0,
            AttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        fresh = [m for m in got if m["MessageId"] not in seen]
        if not fresh:
            break
        for message in fresh:
            seen.add(message["MessageId"])
            found.append(_dead_letter(message))
    return found


def replay_dead_letters(
    conn: psycopg.Connection[Any],
    sqs: SQSClient,
    dlq_url: str,
    queue_url: str,
    *,
    by: str,
    note: str | None = None,
    limit: int = 10,
) -> list[Replayed]:
    """Move failed events from the DLQ back to the events queue, each with a replay marker and a replay_log row.

    Sent first, deleted from the DLQ after: a crash in between leaves the event in both, and the
    second replay is settled by the effect's own guarantees (same key, same locks and constraints).
    """
    done: list[Replayed] = []
    while len(done) < limit:
        got = sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=min(10, limit - len(done)), VisibilityTimeout=60
        ).get("Messages", [])
        if not got:
            break
        for message in got:
            letter = _dead_letter(message)
            if letter.event is None:
                # Not ours to replay: visible again for `dlq list`, and an operator.
                sqs.change_message_visibility(
                    QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
                continue
            record = _record_replay(conn, letter.event, None, by=by, note=note)
            done.append(_send_replay(conn, sqs, queue_url, letter.event, record))
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
        if all(_dead_letter(m).event is None for m in got):
            break
    return done


def _dead_letter(message: Any) -> DeadLetter:
    body = str(message.get("Body") or "")
    try:
        event: InboundEvent | None = InboundEvent.from_message(body)
    except (ValueError, KeyError, TypeError):
        event = None
    count = int((message.get("Attributes") or {}).get("ApproximateReceiveCount") or 0)
    return DeadLetter(str(message["MessageId"]), count, event, body)


@dataclass(frozen=True)
class _Record:
    replay_id: int
    at: dt.datetime
    quarantine_id: int | None
    previous_outcome: str | None
    by: str
    original_key: str


def _record_replay(
    conn: psycopg.Connection[Any],
    event: InboundEvent,
    quarantine_id: int | None,
    *,
    by: str,
    note: str | None,
    original_key: str | None = None,
) -> _Record:
    """The replay_log row, under the key the operator knows: the quarantined or dead-lettered one."""
    original = original_key or (event.replay or {}).get("original_key") or event.key
    seen = conn.execute(q("ops_event_outcome"), {"provider": event.provider, "event_key": original}).fetchone()
    previous = None if seen is None else str(seen[1])
    row = conn.execute(
        q("ops_replay_insert"),
        {
            "quarantine_id": quarantine_id,
            "provider": event.provider,
            "event_key": original,
            "replayed_key": None if event.key == original else event.key,
            "previous_outcome": previous,
            "by": by,
            "note": note,
        },
    ).fetchone()
    if row is None or not isinstance(row[1], dt.datetime):
        raise ExactlyOnceError("replay_log insert returned no row")
    return _Record(int(row[0]), row[1], quarantine_id, previous, by, original)


def _send_replay(
    conn: psycopg.Connection[Any], sqs: SQSClient, queue_url: str, event: InboundEvent, record: _Record
) -> Replayed:
    """Put the event on the events queue with its replay marker; a refusal is recorded, and re-raised."""
    replay_id, at, by, quarantine_id, previous = (
        record.replay_id,
        record.at,
        record.by,
        record.quarantine_id,
        record.previous_outcome,
    )
    marked = InboundEvent(
        event.provider,
        event.key,
        event.group,
        event.kind,
        event.payload,
        event.received_at,
        replay={
            "original_key": record.original_key,
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
            MessageGroupId=group_id(marked.group),  # the group the queue gave the original
            MessageDeduplicationId=marked.dedup_id,
        )
    except (BotoCoreError, ClientError) as exc:
        conn.execute(q("ops_replay_not_sent"), {"id": replay_id})
        raise ReplayNotSentError(f"the events queue refused the replay: {exc}") from exc
    message_id = str(sent.get("MessageId") or "")
    conn.execute(q("ops_replay_sent"), {"id": replay_id, "message_id": message_id})
    return Replayed(quarantine_id, replay_id, event.key, previous, message_id)


def _dicts(cur: psycopg.Cursor[Any]) -> list[dict[str, Any]]:
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
