"""The ``user_feedback`` rows of LiveKit rooms: claim, fenced completion, fenced release, reaping.

A claim is one statement (``feedback_claim``) that moves a room's 'initiated' rows to
'processing' with a fresh ``claim_token`` and a lease. Every later write names the token,
so a worker whose lease ran out (and whose row the reaper handed to someone else) changes
nothing when it finally answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg

from exactly_once.core.events import InboundEvent
from exactly_once.core.queries import q
from exactly_once.core.settings import env_int

CLAIMED = "claimed"


@dataclass(frozen=True)
class FeedbackSettings:
    lease_seconds: int  # longer than the worker's timeout: a live worker never loses its claim
    max_attempts: int  # then 'failed' and a quarantine row
    redrive_seconds: int  # a reset row nobody retried within this is re-driven by the reaper
    late_horizon_seconds: int = 7 * 24 * 3600  # a row appearing this long after its room finished is left alone

    @classmethod
    def from_env(cls) -> FeedbackSettings:
        lease = env_int("LIVEKIT_CLAIM_LEASE_SECONDS", 120)
        return cls(
            lease_seconds=lease,
            max_attempts=max(1, env_int("LIVEKIT_MAX_ATTEMPTS", 3)),
            redrive_seconds=env_int("LIVEKIT_REDRIVE_SECONDS", lease),
            late_horizon_seconds=env_int("LIVEKIT_LATE_ROW_HORIZON_SECONDS", 7 * 24 * 3600),
        )


@dataclass(frozen=True)
class AnalysisClaim:
    """One feedback row of a room this worker analyses until it completes or fails it (fenced on ``token``)."""

    id: str
    token: str
    attempts: int
    room_sid: str | None
    room_name: str
    transcript: str | None


@dataclass(frozen=True)
class RoomClaim:
    claims: list[AnalysisClaim]
    others: list[str]  # statuses of the room's rows this worker did not claim

    @property
    def found(self) -> bool:
        return bool(self.claims or self.others)


@dataclass(frozen=True)
class Reaped:
    id: str
    status: str  # 'initiated' (to re-drive) or 'failed' (attempts spent)
    attempts: int
    room_sid: str | None
    room_name: str
    last_error: str | None


def claim_room(conn: psycopg.Connection[Any], room_sid: str | None, room_name: str | None, lease: int) -> RoomClaim:
    rows = conn.execute(
        q("feedback_claim"), {"room_sid": room_sid, "room_name": room_name, "lease_seconds": lease}
    ).fetchall()
    claims = [AnalysisClaim(str(r[1]), str(r[2]), int(r[3]), r[4], str(r[5]), r[6]) for r in rows if r[0] == CLAIMED]
    return RoomClaim(claims, [str(r[0]) for r in rows if r[0] != CLAIMED])


def complete(conn: psycopg.Connection[Any], claim: AnalysisClaim, analysis: dict[str, Any]) -> bool:
    """Store the analysis and 'completed' if this claim is still the current one."""
    row = conn.execute(
        q("feedback_complete"),
        {"id": claim.id, "claim_token": claim.token, "analysis": json.dumps(analysis, ensure_ascii=False)},
    ).fetchone()
    return row is not None


def release(
    conn: psycopg.Connection[Any], claim: AnalysisClaim, error: str, settings: FeedbackSettings
) -> tuple[str, int] | None:
    """Give a failed claim back: (new status, attempts), or None when the claim was no longer ours."""
    row = conn.execute(
        q("feedback_release"),
        {
            "id": claim.id,
            "claim_token": claim.token,
            "error": error[:2000],
            "max_attempts": settings.max_attempts,
            "redrive_seconds": settings.redrive_seconds,
        },
    ).fetchone()
    return (str(row[0]), int(row[1])) if row else None


def reap(conn: psycopg.Connection[Any], settings: FeedbackSettings, limit: int = 500) -> list[Reaped]:
    rows = conn.execute(
        q("feedback_reap"),
        {"max_attempts": settings.max_attempts, "redrive_seconds": settings.redrive_seconds, "limit": limit},
    ).fetchall()
    return [Reaped(str(r[0]), str(r[1]), int(r[2]), r[3], str(r[4]), r[5]) for r in rows]


def room_finished(conn: psycopg.Connection[Any], room_sid: str, room_name: str | None, event_key: str) -> None:
    """Remember that the room is over, so a feedback row the app creates later is still analysed."""
    conn.execute(q("room_finished_record"), {"room_sid": room_sid, "room_name": room_name, "event_key": event_key})


def late_rows(conn: psycopg.Connection[Any], settings: FeedbackSettings, limit: int = 500) -> list[Reaped]:
    """Rows created after their room finished, each given a re-drive time in the same statement."""
    rows = conn.execute(
        q("feedback_late_rows"),
        {
            "redrive_seconds": settings.redrive_seconds,
            "horizon_seconds": settings.late_horizon_seconds,
            "limit": limit,
        },
    ).fetchall()
    return [Reaped(str(r[0]), str(r[1]), int(r[2]), r[3], str(r[4]), r[5]) for r in rows]


def late_count(conn: psycopg.Connection[Any], after_seconds: int) -> int:
    row = conn.execute(q("feedback_late_gauge"), {"after_seconds": after_seconds}).fetchone()
    return int(row[0]) if row else 0


def settle_event(conn: psycopg.Connection[Any], event: InboundEvent, outcome: str, effect_id: str | None = None) -> int:
    """Record the delivery in the event log; a terminal outcome replaces an earlier 'duplicate'."""
    row = conn.execute(
        q("feedback_event_settle"),
        {
            "provider": event.provider,
            "event_key": event.key,
            "kind": event.kind,
            "outcome": outcome,
            "effect_id": effect_id,
            "payload": json.dumps(event.payload, ensure_ascii=False),
        },
    ).fetchone()
    if row is None:  # RETURNING always yields a row; guard for the type checker
        raise RuntimeError("statement returned no row")
    return int(row[0])
