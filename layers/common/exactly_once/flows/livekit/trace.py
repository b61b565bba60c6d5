"""``exactly-once trace``: a room_finished event's feedback claim."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exactly_once.core.queries import q, rows

if TYPE_CHECKING:
    import psycopg


def effects(conn: psycopg.Connection[Any], key: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    """room_finished: the room's feedback claim (status, attempts, lease), found by the room in the payload."""
    if event.get("kind") != "room_finished":
        return []
    row = conn.execute(q("ops_trace_event_payload"), {"provider": "livekit", "event_key": key}).fetchone()
    room = ((row[0] if row else None) or {}).get("room") or {}
    sid, name = room.get("sid"), room.get("name")
    if not sid and not name:
        return []
    return rows(conn, "ops_trace_livekit_feedback", {"sid": sid or None, "name": name})
