"""``exactly-once trace``: a WhatsApp message's stored row and reply, a status's send and delivery state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exactly_once.core.queries import rows

if TYPE_CHECKING:
    import psycopg


def effects(conn: psycopg.Connection[Any], key: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    """A message: the stored row and the reply's send; a status: the send it is about and the delivery state."""
    if key.startswith("whatsapp:msg:"):
        wamid = key.removeprefix("whatsapp:msg:")
        return rows(conn, "ops_trace_whatsapp_message", {"wamid": wamid}) + rows(
            conn, "ops_trace_send", {"idempotency_key": f"reply:{wamid}", "provider_message_id": None}
        )
    if key.startswith("whatsapp:status:"):
        wamid = key.removeprefix("whatsapp:status:").rsplit(":", 1)[0]
        return rows(conn, "ops_trace_send", {"idempotency_key": None, "provider_message_id": wamid}) + rows(
            conn, "ops_trace_delivery", {"wamid": wamid}
        )
    return []
