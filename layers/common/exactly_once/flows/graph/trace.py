"""``exactly-once trace``: a Graph mail notification's ticket or comment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exactly_once.core.queries import rows

if TYPE_CHECKING:
    import psycopg


def effects(conn: psycopg.Connection[Any], key: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    """The ticket or comment of a mail notification, found by the Graph message id in the key."""
    parts = key.removeprefix("graph:").split("|")
    if key.startswith("graph:lifecycle:") or len(parts) < 3:
        return []
    return rows(conn, "ops_trace_graph_mail", {"graph_message_id": parts[2]})
