"""The event log and the quarantine: what every flow records in Postgres."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg

from exactly_once.core.events import InboundEvent
from exactly_once.core.queries import q
from exactly_once.core.telemetry import Metric, counters, logger


@dataclass(frozen=True)
class Seen:
    outcome: str
    effect_id: str | None
    deliveries: int


def already_settled(conn: psycopg.Connection[Any], event: InboundEvent) -> Seen | None:
    """The outcome of an event a worker already settled (and count this delivery), else None."""
    if event.replay:
        return None  # an operator replay passes on purpose
    row = conn.execute(q("event_log_seen"), {"provider": event.provider, "event_key": event.key}).fetchone()
    return Seen(row[0], row[1], row[2]) if row else None


def record_event(
    conn: psycopg.Connection[Any],
    event: InboundEvent,
    outcome: str,
    effect_id: str | int | None = None,
    *,
    keep_payload: bool = True,
) -> int:
    """Record a settled event; return how many times it has been seen."""
    row = conn.execute(
        q("event_log_record"),
        {
            "provider": event.provider,
            "event_key": event.key,
            "kind": event.kind,
            "outcome": outcome,
            "effect_id": None if effect_id is None else str(effect_id),
            "payload": json.dumps(event.payload, ensure_ascii=False) if keep_payload else None,
            "replay_of": (event.replay or {}).get("original_key"),
        },
    ).fetchone()
    if row is None:  # RETURNING always yields a row; guard for the type checker
        raise RuntimeError("statement returned no row")
    return int(row[1])


def quarantine(
    conn: psycopg.Connection[Any],
    *,
    provider: str,
    event_key: str,
    reason: str,
    raw: str,
    external_id: str | None = None,
    envelope: str | None = None,
) -> tuple[int, bool]:
    """Keep an event that cannot be settled, with its raw input and the reason; (id, first time).

    ``envelope`` is the queued event itself (``InboundEvent.to_message()``): with it an operator
    can replay the event through the same code path (``exactly-once quarantine replay``).
    """
    row = conn.execute(
        q("quarantine_put"),
        {
            "provider": provider,
            "event_key": event_key,
            "external_id": external_id,
            "reason": _storable(reason),
            "raw": _storable(raw),
            "envelope": envelope,
        },
    ).fetchone()
    if row is None:  # RETURNING always yields a row; guard for the type checker
        raise RuntimeError("statement returned no row")
    return int(row[0]), bool(row[1])


def quarantine_event(
    conn: psycopg.Connection[Any], event: InboundEvent, reason: str, external_id: str | None = None
) -> int:
    raw = event.payload.get("raw") if isinstance(event.payload.get("raw"), str) else None
    qid, _ = quarantine(
        conn,
        provider=event.provider,
        event_key=event.key,
        reason=reason,
        raw=raw if raw is not None else json.dumps(event.payload, ensure_ascii=False),
        external_id=external_id,
        envelope=event.to_message(),
    )
    return qid


def quarantine_unreadable(
    conn: psycopg.Connection[Any], provider: str, message_id: str, body: str, reason: str, **log: Any
) -> str:
    """Keep a queue message no worker can read (its raw body and the reason), count it, log it.

    Kept, never dropped: the worker then acknowledges the message. ``log`` adds fields to the warning.
    """
    key = f"sqs:{message_id}"
    quarantine(conn, provider=provider, event_key=key, reason=reason, raw=json.dumps({"body": body}))
    counters.incr(provider, Metric.QUARANTINED)
    logger.warning(
        "unreadable queue message quarantined",
        extra={
            "key": key,
            "message_id": message_id,
            "provider": provider,
            "outcome": "quarantined",
            "reason": reason,
            **log,
        },
    )
    return "quarantined"


def _storable(text: str) -> str:
    """Postgres text cannot hold NUL; the envelope keeps the exact event (JSON-escaped)."""
    return text.replace("\x00", "\ufffd")


def replay_settled(conn: psycopg.Connection[Any], event: InboundEvent, outcome: str) -> None:
    """The worker settled an operator's replay (``ops/quarantine.replay``): its outcome, next to who asked."""
    replay_id = (event.replay or {}).get("replay_id")
    if replay_id is None:
        return
    conn.execute(q("ops_replay_settled"), {"id": int(replay_id), "provider": event.provider, "outcome": outcome})
