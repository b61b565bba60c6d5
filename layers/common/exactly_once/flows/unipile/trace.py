"""``exactly-once trace``: the linkedin_messages row a Unipile message event recorded or met."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exactly_once.core.queries import rows

if TYPE_CHECKING:
    import psycopg


def effects(conn: psycopg.Connection[Any], key: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    """A LinkedIn message event: the linkedin_messages row it recorded or met (event_log.effect_id)."""
    effect_id = str(event.get("effect_id") or "")
    if not effect_id.isdigit():
        return []
    return rows(conn, "ops_trace_linkedin_message", {"id": int(effect_id)})
