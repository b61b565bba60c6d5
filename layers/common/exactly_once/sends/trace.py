"""``exactly-once trace send:<id>``: a send with its claims and attempts, the ledger, the outbox relays."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exactly_once.core.queries import rows

if TYPE_CHECKING:
    import psycopg


def send(conn: psycopg.Connection[Any], key: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    """``send:<id>`` (a send in review): the row with its claims and attempts, the ledger, the outbox relays."""
    send_id = key.removeprefix("send:")
    if not send_id.isdigit():
        return []
    params = {"id": int(send_id)}
    return (
        rows(conn, "ops_trace_send_by_id", params)
        + rows(conn, "ops_trace_send_ledger", params)
        + rows(conn, "ops_trace_send_outbox", params)
    )
