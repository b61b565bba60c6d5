"""Reaper of LiveKit feedback claims (registered in ``reaper.REAPERS`` as ``livekit_feedback``).

A worker that died or hung past its lease leaves its row 'processing': the reaper takes the
token away (back to 'initiated', or 'failed' plus a quarantine row when the attempts are
spent) and re-drives the room by enqueueing a room_finished event, so a worker claims it
anew. The reset is committed before the enqueue; if the enqueue is lost, the row carries
``lease_until`` = now + LIVEKIT_REDRIVE_SECONDS and the next tick re-drives it again.
A duplicate re-drive is harmless: only one of them can claim.
"""

from __future__ import annotations

import json
import os
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from exactly_once.core import aws, store
from exactly_once.core.crash import crashpoint
from exactly_once.core.errors import QueueUnavailableError
from exactly_once.core.events import InboundEvent
from exactly_once.core.fifo import EventQueue
from exactly_once.core.telemetry import Metric, counters, logger
from exactly_once.flows.livekit import feedback
from exactly_once.flows.livekit.feedback import FeedbackSettings, Reaped

PROVIDER = "livekit"


def redrive_event(row: Reaped) -> InboundEvent:
    """A room_finished for a reset row; its key is new per attempt, so FIFO dedup never drops it."""
    key = f"livekit:redrive:{row.id}:{row.attempts}"
    room = {"sid": row.room_sid, "name": row.room_name} if row.room_sid else {"name": row.room_name}
    payload: dict[str, Any] = {
        "event": "room_finished",
        "id": key,
        "room": room,
        "redrive": {"feedback_id": row.id, "attempts": row.attempts, "reason": row.last_error},
    }
    # A group of its own: the dead worker's message may still hold the room's group in flight (FIFO
    # delivers nothing else of a group until then); the claim, not the order, decides who analyses.
    group = f"livekit:redrive:{row.room_sid or row.room_name}"
    return InboundEvent(PROVIDER, key, group, "room_finished", payload)


def reap(conn: psycopg.Connection[Any]) -> int:
    settings = FeedbackSettings.from_env()
    with conn.transaction():
        rows = feedback.reap(conn, settings)
        for row in rows:
            if row.status == "failed":
                store.quarantine(
                    conn,
                    provider=PROVIDER,
                    event_key=f"livekit:feedback:{row.id}",
                    external_id=row.room_sid,
                    reason=f"feedback analysis abandoned after {row.attempts} attempts; last error: {row.last_error}",
                    raw=json.dumps({"feedback_id": row.id, "room": {"sid": row.room_sid, "name": row.room_name}}),
                )
    if not rows:
        return 0
    crashpoint("livekit.reaper.after_reset")
    failed = [row for row in rows if row.status == "failed"]
    if failed:
        counters.incr(PROVIDER, Metric.QUARANTINED, len(failed))
        logger.error("feedback claims abandoned", extra={"feedback_ids": [r.id for r in failed]})
    redrive = [redrive_event(row) for row in rows if row.status == "initiated"]
    if redrive:
        try:
            refused = EventQueue(os.environ["EVENTS_QUEUE_URL"], aws.sqs()).send(redrive)
        except (QueueUnavailableError, BotoCoreError, ClientError, KeyError):
            # The rows keep their re-drive time: the next tick after it tries again.
            logger.exception("re-drive not enqueued", extra={"keys": [e.key for e in redrive]})
            return len(rows)
        logger.info(
            "feedback claims re-driven",
            extra={"keys": [e.key for e in redrive], "refused": [e.key for e in refused]},
        )
    return len(rows)
