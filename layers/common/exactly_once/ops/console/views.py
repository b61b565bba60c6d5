"""What the console reads: the overview, the event search, sends awaiting a person, mailbox users.

Every read is bounded (a LIMIT, a time window) and pages on a key (``before_id``, ``after_user``);
the indexes are in ``0012_console.sql``. The quarantine list and trace are the CLI's own functions.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import psycopg

from exactly_once.core.queries import q, rows
from exactly_once.core.settings import env_int
from exactly_once.ops.trace import DATABASE_DUPLICATES

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SEND_STATUSES = ("review", "unknown")


def overview(conn: psycopg.Connection[Any], *, hours: int, queue_depths: dict[str, int | None]) -> dict[str, Any]:
    """Per provider and hour: events, duplicates stopped by the worker and by the database, effects;
    with open quarantine, stuck rows, sends by status and the dead-letter queues' depth."""
    with conn.transaction():
        buckets = rows(conn, "console_event_buckets", {"hours": hours})
        open_rows = {str(p): int(n) for p, n in conn.execute(q("ops_open_quarantine")).fetchall()}
        stuck = {str(f): int(n) for f, n in conn.execute(q("ops_stuck_rows")).fetchall()}
        send_stuck = conn.execute(q("send_stuck"), {"stuck_seconds": env_int("SEND_STUCK_SECONDS", 300)}).fetchone()
        sends = {str(s): int(n) for s, n in conn.execute(q("console_send_counts")).fetchall()}
    stuck["sends"] = int(send_stuck[0]) if send_stuck else 0
    providers: dict[str, dict[str, Any]] = {}
    for bucket in buckets:
        entry = providers.setdefault(
            bucket["provider"],
            {
                "events": 0,
                "worker_duplicates": 0,
                "database_duplicates": 0,
                "effects": 0,
                "quarantined": 0,
                "hours": [],
            },
        )
        counts = {k: int(bucket[k]) for k in ("events", "worker_duplicates", "database_duplicates", "effects")}
        counts["quarantined"] = int(bucket["quarantined"])
        for name, value in counts.items():
            entry[name] += value
        entry["hours"].append({"hour": bucket["hour"], **counts})
    for provider, count in open_rows.items():
        providers.setdefault(provider, {"events": 0, "hours": []})["open_quarantine"] = count
    for entry in providers.values():
        entry.setdefault("open_quarantine", 0)
    return {
        "window_hours": hours,
        "since": dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours),
        "providers": dict(sorted(providers.items())),
        "stuck_rows": stuck,
        "sends": sends,
        "dead_letters": queue_depths,
        "layers": {
            "ingest": "DynamoDB conditional write: counted in the DuplicatesStoppedIngest metric (CloudWatch), "
            "not per key in Postgres",
            "worker": "later deliveries the worker answered from the event log (event_log.deliveries - 1)",
            "database": f"effects found already made by the advisory lock + claim or constraint "
            f"(outcomes {', '.join(DATABASE_DUPLICATES)})",
        },
    }


def queue_depth(sqs: SQSClient, queue_url: str | None) -> int | None:
    """Messages waiting in a queue (visible + in flight), or None when it cannot be read."""
    if not queue_url:
        return None
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        attrs = sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
    except (BotoCoreError, ClientError, KeyError):
        return None
    return int(attrs.get("ApproximateNumberOfMessages", 0)) + int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))


def search_events(
    conn: psycopg.Connection[Any],
    *,
    key: str | None,
    provider: str | None,
    outcome: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    before_id: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The event log, newest first; ``key`` matches as a prefix (its LIKE wildcards are taken literally)."""
    prefix = None if not key else key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return rows(
        conn,
        "console_events_search",
        {
            "provider": provider,
            "key_prefix": prefix,
            "outcome": outcome,
            "since": since,
            "until": until,
            "before_id": before_id,
            "limit": limit,
        },
    )


def sends_waiting(
    conn: psycopg.Connection[Any], *, statuses: tuple[str, ...], before_id: int | None, limit: int
) -> list[dict[str, Any]]:
    return rows(conn, "console_sends_waiting", {"statuses": list(statuses), "before_id": before_id, "limit": limit})


def send_detail(conn: psycopg.Connection[Any], send_id: int) -> dict[str, Any] | None:
    """One send with what is known: the row, its ledger entry, its relay records, its quarantine row."""
    found = rows(conn, "ops_trace_send_by_id", {"id": send_id})
    if not found:
        return None
    detail = found[0]
    detail.pop("effect", None)
    detail.update(next(iter(rows(conn, "console_send_recipient", {"id": send_id})), {}))
    detail["ledger"] = rows(conn, "ops_trace_send_ledger", {"id": send_id})
    detail["outbox"] = rows(conn, "ops_trace_send_outbox", {"id": send_id})
    detail["quarantine"] = rows(conn, "ops_trace_quarantine", {"event_key": f"send:{send_id}", "provider": None})
    return detail


def mailbox_users(conn: psycopg.Connection[Any], *, after_user: str | None, limit: int) -> list[dict[str, Any]]:
    return rows(conn, "console_mailbox_users", {"after_user": after_user, "limit": limit})


def graph_subscriptions(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Each watched mailbox, its live subscription (expiry, last renewal) and its resync (the manager's rows)."""
    return rows(conn, "graph_status", {})


def dead_letters(sqs: SQSClient, dlq_url: str, *, limit: int, longest_body: int) -> list[dict[str, Any]]:
    """`exactly-once dlq list`: a look at the events DLQ, nothing taken; a body that is no event, shown if short."""
    from botocore.exceptions import BotoCoreError, ClientError

    from exactly_once.core.errors import DependencyUnavailableError
    from exactly_once.ops import quarantine

    try:
        letters = quarantine.dead_letters(sqs, dlq_url, limit=limit)
    except (BotoCoreError, ClientError) as exc:
        raise DependencyUnavailableError("the events dead-letter queue did not answer", exc) from exc
    found = []
    for d in letters:
        event = d.event
        entry: dict[str, Any] = {
            "message_id": d.message_id,
            "receives": d.receive_count,
            "provider": event.provider if event else None,
            "key": event.key if event else None,
            "kind": event.kind if event else None,
            "replay_of": (event.replay or {}).get("original_key") if event else None,
            "payload": event.payload if event else None,
            "body": None if event or len(d.body) > longest_body else d.body,
            "body_length": len(d.body),
        }
        found.append(entry)
    return found
