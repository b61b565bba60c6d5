"""``exactly-once trace <event key>``: what happened to one event, layer by layer.

* ingest: the Powertools idempotency record of the key in DynamoDB (when AWS is reachable);
  while it lives, every re-delivery is stopped there (counted in DuplicatesStoppedIngest, not per key);
* worker: the event log row (deliveries the worker saw, the outcome, the effect id, replay lineage);
  a delivery after the first was stopped by the event log or by the effect's own guarantees;
* effect: the flow's own rows (a ticket or comment, a feedback claim, a stored message, a send), read by
  the tracer its provider declares (``Provider.tracer``, or ``Flow.key_tracers`` for keys that are not events);
* quarantine rows and operator replays of the key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any

import psycopg

from exactly_once.core.queries import rows
from exactly_once.providers import FLOWS, PROVIDERS

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
    declared = PROVIDERS.get(provider or "")
    if declared is not None and declared.tracer is not None:
        tracer: EffectTracer = declared.tracer.load()
        for event in events:
            result["effects"].extend(tracer(conn, str(event["event_key"]), event))
    for flow in FLOWS:
        for prefix, by_key in flow.key_tracers.items():
            if key.startswith(prefix):
                result["effects"].extend(by_key.load()(conn, key, {}))
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
    return rows(conn, name, {"event_key": key, "provider": provider})
