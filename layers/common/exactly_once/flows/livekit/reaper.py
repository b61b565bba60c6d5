"""Reaper of LiveKit feedback claims (registered in ``reaper.REAPERS`` as ``livekit_feedback``).

A worker that died or hung past its lease leaves its row 'processing': the reaper takes the
token away (back to 'initiated', or 'failed' plus a quarantine row when the attempts are
spent) and re-drives the room by enqueueing a room_finished event, so a worker claims it
anew. The reset is committed before the enqueue; if the enqueue is lost, the row carries
``lease_until`` = now + LIVEKIT_REDRIVE_SECONDS and the next tick re-drives it again.
A duplicate re-drive is harmless: only one of them can claim.

``redrive_late_rows`` (``Reaper("livekit_late_feedback")``): feedback rows the app created after
their room finished (the room_finished worker found none and recorded ``no_feedback``) get a
re-drive time and a room_finished re-drive, the same path as a reset claim; it also emits the
``LateFeedbackRows`` gauge (rows still 'initiated' 10 minutes after their room finished).
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
    _redrive([redrive_event(row) for row in rows if row.status == "initiated"], "feedback claims re-driven")
    return len(rows)


#: The LateFeedbackRows gauge counts rows still 'initiated' this long after their room finished.
LATE_AFTER_SECONDS = 600


def redrive_late_rows(conn: psycopg.Connection[Any]) -> int:
    """Rows that appeared after their room finished: re-driven once through the claim (the claim decides)."""
    settings = FeedbackSettings.from_env()
    with conn.transaction():
        rows = feedback.late_rows(conn, settings)
    crashpoint("livekit.reaper.after_late_mark")
    if rows:
        counters.incr(PROVIDER, Metric.LATE_FEEDBACK_REDRIVEN, len(rows))
        _redrive([redrive_event(row) for row in rows], "late feedback rows re-driven")
    late = feedback.late_count(conn, LATE_AFTER_SECONDS)
    counters.incr(PROVIDER, Metric.LATE_FEEDBACK_ROWS, late)  # every run, 0 included: the alarm sees the reaper
    if late:
        logger.warning("feedback rows initiated after their room finished", extra={"late": late})
    return len(rows)


def _redrive(events: list[InboundEvent], message: str) -> None:
    if not events:
        return
    try:
        refused = EventQueue(os.environ["EVENTS_QUEUE_URL"], aws.sqs()).send(events)
    except (QueueUnavailableError, BotoCoreError, ClientError, KeyError):
        # The rows keep their re-drive time: the next tick after it tries again.
        logger.exception("re-drive not enqueued", extra={"keys": [e.key for e in events]})
        return
    logger.info(message, extra={"keys": [e.key for e in events], "refused": [e.key for e in refused]})
