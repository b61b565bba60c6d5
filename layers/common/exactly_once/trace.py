"""``exactly-once trace <event key>``: what happened to one event, layer by layer.

* ingest: the Powertools idempotency record of the key in DynamoDB (when AWS is reachable);
  while it lives, every re-delivery is stopped there (counted in DuplicatesStoppedIngest, not per key);
* worker: the event log row (deliveries the worker saw, the outcome, the effect id, replay lineage);
  a delivery after the first was stopped by the event log or by the effect's own guarantees;
* effect: the flow's own rows (a ticket or comment, a feedback claim, a stored message, a send);
* quarantine rows and operator replays of the key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any

import psycopg

from exactly_once.queries import q

EffectTracer = Callable[[psycopg.Connection[Any], str, dict[str, Any]], list[dict[str, Any]]]

# Outcomes that mean the Postgres layer (advisory lock + claim or unique constraint) found the effect
# already made by another event: this event's effect was a duplicate stopped there.
DATABASE_DUPLICATES = ("duplicate", "recovered")


def ingest_record_id(provider: str, key: str) -> str:
    """The idempotency record's id as Powertools writes it for ``IngestDeduper`` (key_prefix ``{provider}-ingest``).

    Powertools hashes what ``event_key_jmespath`` ("key") extracts, the key string itself,
    serialised with ``json.dumps(..., sort_keys=True)``, with the configured sha256.
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return f"{provider}-ingest#{digest}"


def ingest_record(dynamodb: Any, table: str, provider: str, key: str) -> dict[str, Any]:
    """The ingest layer's view of the key: its idempotency record, or why it cannot be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    record_id = ingest_record_id(provider, key)
    try:
        item = dynamodb.get_item(TableName=table, Key={"id": {"S": record_id}}, ConsistentRead=True).get("Item")
    except (BotoCoreError, ClientError) as exc:
        return {"id": record_id, "status": "unreachable", "error": type(exc).__name__}
    if not item:
        return {"id": record_id, "status": "absent"}
    expires = int(item.get("expiration", {}).get("N", "0"))
    status = item.get("status", {}).get("S", "")
    if expires and expires < dt.datetime.now(dt.UTC).timestamp():
        status = "EXPIRED"
    return {
        "id": record_id,
        "status": status,
        "expires_at": dt.datetime.fromtimestamp(expires, dt.UTC).isoformat() if expires else None,
    }


def trace(
    conn: psycopg.Connection[Any],
    key: str,
    *,
    provider: str | None = None,
    dynamodb: Any = None,
    idempotency_table: str | None = None,
) -> dict[str, Any]:
    guessed = provider or (key.split(":", 1)[0] if ":" in key else None)
    events = _rows(conn, "ops_trace_event", key, guessed)
    if not events and provider is None and guessed is not None:
        guessed = None  # the prefix was not the provider: look the key up under any provider
        events = _rows(conn, "ops_trace_event", key, None)
    provider = provider or (events[0]["provider"] if events else guessed)
    result: dict[str, Any] = {
        "key": key,
        "provider": provider,
        "events": events,
        "quarantine": _rows(conn, "ops_trace_quarantine", key, provider),
        "replays": _rows(conn, "ops_trace_replays", key, provider),
        "effects": [],
    }
    if dynamodb is not None and idempotency_table and provider:
        result["ingest"] = ingest_record(dynamodb, idempotency_table, provider, key)
    for replay in result["replays"]:
        if replay["replayed_key"]:
            # A corrected payload travelled under a key of its own: its event log row is part of this story.
            events.extend(_rows(conn, "ops_trace_event", replay["replayed_key"], provider))
    tracer = EFFECT_TRACERS.get(provider or "")
    for event in events:
        if tracer is not None:
            result["effects"].extend(tracer(conn, str(event["event_key"]), event))
    for prefix, by_key in KEY_TRACERS.items():
        if key.startswith(prefix):
            result["effects"].extend(by_key(conn, key, {}))
    result["stopped"] = _stopped(result)
    return result


def _stopped(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Which layer stopped which duplicate, as far as the stores can tell."""
    stopped: list[dict[str, Any]] = []
    ingest = result.get("ingest") or {}
    if ingest.get("status") in ("COMPLETED", "INPROGRESS"):
        stopped.append(
            {
                "layer": "ingest (DynamoDB)",
                "what": "every re-delivery until the record expires"
                + (f" at {ingest['expires_at']}" if ingest.get("expires_at") else "")
                + " (counted in DuplicatesStoppedIngest, not per key)",
            }
        )
    for event in result["events"]:
        # Replays under the same key count as deliveries too; they were not duplicates.
        replayed = (
            0
            if event["event_key"] != result["key"]
            else sum(1 for r in result["replays"] if r["outcome"] and not r["replayed_key"])
        )
        again = int(event["deliveries"]) - 1 - replayed
        if again > 0:
            stopped.append(
                {
                    "layer": "worker (SQS FIFO + event log)",
                    "what": f"{again} later deliveries reached the worker and were answered "
                    f"with the recorded outcome {event['outcome']!r}",
                }
            )
        if str(event["outcome"]).split(":", 1)[0] in DATABASE_DUPLICATES:
            stopped.append(
                {
                    "layer": "Postgres (advisory lock + claim or unique constraint)",
                    "what": f"this event's effect already existed ({event['outcome']}, effect {event['effect_id']})",
                }
            )
    return stopped


def _rows(conn: psycopg.Connection[Any], name: str, key: str, provider: str | None) -> list[dict[str, Any]]:
    cur = conn.execute(q(name), {"event_key": key, "provider": provider})
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _graph_effects(conn: psycopg.Connection[Any], key: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    """A mail notification's ticket or comment, found by the Graph message id in the key."""
    parts = key.removeprefix("graph:").split("|")
    if key.startswith("graph:lifecycle:") or len(parts) < 3:
        return []
    cur = conn.execute(q("ops_trace_graph_mail"), {"graph_message_id": parts[2]})
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _livekit_effects(conn: psycopg.Connection[Any], key: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    """room_finished: the room's feedback claim (status, attempts, lease), found by the room in the payload."""
    if event.get("kind") != "room_finished":
        return []
    row = conn.execute(q("ops_trace_event_payload"), {"provider": "livekit", "event_key": key}).fetchone()
    room = ((row[0] if row else None) or {}).get("room") or {}
    sid, name = room.get("sid"), room.get("name")
    if not sid and not name:
        return []
    return _query(conn, "ops_trace_livekit_feedback", {"sid": sid or None, "name": name})


def _whatsapp_effects(conn: psycopg.Connection[Any], key: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    """A message: the stored row and the reply's send; a status: the send it is about and the delivery state."""
    if key.startswith("whatsapp:msg:"):
        wamid = key.removeprefix("whatsapp:msg:")
        return _query(conn, "ops_trace_whatsapp_message", {"wamid": wamid}) + _query(
            conn, "ops_trace_send", {"idempotency_key": f"reply:{wamid}", "provider_message_id": None}
        )
    if key.startswith("whatsapp:status:"):
        wamid = key.removeprefix("whatsapp:status:").rsplit(":", 1)[0]
        return _query(conn, "ops_trace_send", {"idempotency_key": None, "provider_message_id": wamid}) + _query(
            conn, "ops_trace_delivery", {"wamid": wamid}
        )
    return []


def _query(conn: psycopg.Connection[Any], name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cur = conn.execute(q(name), params)
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _send_effects(conn: psycopg.Connection[Any], key: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    """``send:<id>`` (a send in review): the row with its claims and attempts, the ledger, the outbox relays."""
    send_id = key.removeprefix("send:")
    if not send_id.isdigit():
        return []
    params = {"id": int(send_id)}
    return (
        _query(conn, "ops_trace_send_by_id", params)
        + _query(conn, "ops_trace_send_ledger", params)
        + _query(conn, "ops_trace_send_outbox", params)
    )


def _unipile_effects(conn: psycopg.Connection[Any], key: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    """A LinkedIn message event: the linkedin_messages row it recorded or met (event_log.effect_id)."""
    effect_id = str(event.get("effect_id") or "")
    if not effect_id.isdigit():
        return []
    return _query(conn, "ops_trace_linkedin_message", {"id": int(effect_id)})


def _mailbox_job_effects(conn: psycopg.Connection[Any], key: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    """A mailbox job id (``mbx-<user>-<slot>``): the job row with its claim and attempts."""
    return _query(conn, "ops_trace_mailbox_job", {"job_id": key})


# key prefix -> rows of keys that are not events (a flow's own quarantine keys); looked up even without an event.
KEY_TRACERS: dict[str, EffectTracer] = {
    "send:": _send_effects,
    "mbx-": _mailbox_job_effects,
}

# provider -> the rows its flow keeps for an event (claims, attempts, the effect); others show the event log only.
EFFECT_TRACERS: dict[str, EffectTracer] = {
    "graph": _graph_effects,
    "livekit": _livekit_effects,
    "whatsapp": _whatsapp_effects,
    "unipile": _unipile_effects,
}
