"""``exactly-once trace mbx-<user>-<slot>``: a mailbox job with its claim and attempts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exactly_once.core.queries import rows

if TYPE_CHECKING:
    import psycopg


def job(conn: psycopg.Connection[Any], key: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    """A mailbox job id (``mbx-<user>-<slot>``): the job row with its claim and attempts."""
    return rows(conn, "ops_trace_mailbox_job", {"job_id": key})
