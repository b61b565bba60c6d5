"""LiveKit events: room_finished -> exactly one feedback analysis per room; the rest recorded once.

room_finished: remember the room is over (``livekit_rooms_finished``: a feedback row the app
creates later is re-driven by the reaper), claim the room's 'initiated' feedback rows in one
statement (none -> a duplicate, stopped at Postgres, acknowledged), call the analysis model, then store the
result under the claim token. A failure gives the claim back ('initiated', attempts and
last error kept) and raises, so SQS retries the message; the last allowed attempt ends in
'failed' plus a quarantine row. A worker that dies holding a claim is covered by the reaper
(``feedback_reaper``), which hands the row to a new claim and re-drives the event.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import psycopg

from exactly_once.core import db, store
from exactly_once.core.crash import crashpoint
from exactly_once.core.errors import ExactlyOnceError, PermanentEventError
from exactly_once.core.events import InboundEvent
from exactly_once.core.telemetry import Metric, counters, logger
from exactly_once.flows.livekit import feedback
from exactly_once.flows.livekit.feedback import AnalysisClaim, FeedbackSettings
from exactly_once.flows.livekit.llm_client import LlmClient

PROVIDER = "livekit"
# Event types the bundle knows; anything else is recorded as unhandled (adding a handler is
# one branch in ``process``), never failed.
KNOWN_EVENTS = frozenset(
    {
        "room_started",
        "room_finished",
        "participant_joined",
        "participant_left",
        "participant_connection_aborted",
        "track_published",
        "track_unpublished",
        "egress_started",
        "egress_updated",
        "egress_ended",
        "ingress_started",
        "ingress_ended",
    }
)
MAX_TRANSCRIPT_CHARS = 60_000
SYSTEM_PROMPT = (
    "You analyse a finished voice call to produce user feedback. Answer with one JSON object: "
    '{"summary": str, "sentiment": "positive"|"neutral"|"negative", "issues": [str]}.'
)


class AnalysisRetryError(ExactlyOnceError):
    """The analysis failed and its claim was given back: the message is retried."""


@functools.cache
def llm() -> LlmClient:
    return LlmClient.from_env()


def process(event: InboundEvent) -> str:
    conn = db.connection()
    if event.kind == "room_finished":
        return analyse_room(conn, event, llm(), FeedbackSettings.from_env())
    return record_other(conn, event)


def record_other(conn: psycopg.Connection[Any], event: InboundEvent) -> str:
    """participant_joined, egress_ended, unknown types...: one event log row, re-deliveries counted."""
    outcome = "recorded" if event.kind in KNOWN_EVENTS else "recorded_unhandled"
    times = store.record_event(conn, event, outcome)
    if times > 1:
        counters.incr(PROVIDER, Metric.DUP_QUEUE)
        logger.info("duplicate stopped", extra={"layer": "worker_event_log", "kind": event.kind})
        return f"duplicate:{outcome}"
    return outcome


def analyse_room(
    conn: psycopg.Connection[Any], event: InboundEvent, client: LlmClient, settings: FeedbackSettings
) -> str:
    room = event.payload.get("room")
    room = room if isinstance(room, dict) else {}
    sid, name = _text(room.get("sid")), _text(room.get("name"))
    if sid is None and name is None:
        raise PermanentEventError("room_finished without room.sid or room.name")
    if sid is not None:
        # Before the claim: a row committed after the claim's snapshot finds the room finished,
        # and the reaper's late-row pass (reaper.redrive_late_rows) hands it to a claim.
        feedback.room_finished(conn, sid, name, event.key)
    claim = feedback.claim_room(conn, sid, name, settings.lease_seconds)
    if not claim.claims:
        outcome = "duplicate" if claim.found else "no_feedback"
        if claim.found:
            counters.incr(PROVIDER, Metric.DUP_DATABASE)
        logger.info(
            "room not claimed",
            extra={"layer": "postgres_claim", "outcome": outcome, "room_sid": sid, "statuses": claim.others},
        )
        feedback.settle_event(conn, event, outcome)
        return outcome
    crashpoint("livekit.worker.after_claim")
    outcomes: list[str] = []
    retry: AnalysisRetryError | None = None
    for one in claim.claims:
        try:
            outcomes.append(_analyse(conn, event, one, client, settings))
        except AnalysisRetryError as exc:
            retry = exc  # the room's other rows still get their turn
    if retry is not None:
        raise retry
    return outcomes[0] if len(set(outcomes)) == 1 else ",".join(outcomes)


def _analyse(
    conn: psycopg.Connection[Any],
    event: InboundEvent,
    claim: AnalysisClaim,
    client: LlmClient,
    settings: FeedbackSettings,
) -> str:
    try:
        answer = client.chat(
            _messages(claim),
            # Same claim, same key: the HTTP client's retries of this request are one request to a
            # provider or gateway that dedups; a new claim (after a failure or a reap) is a new request.
            idempotency_key=f"feedback-{claim.id}-{claim.token}",
        )
    except Exception as exc:  # whatever failed, the claim must be given back before the retry
        counters.incr(PROVIDER, Metric.LLM_CALLS)  # a failed call may still have been billed
        return _give_back(conn, event, claim, exc, settings)
    _count_llm_call(answer.usage)
    crashpoint("livekit.worker.after_llm")
    analysis = {
        "result": answer.as_json(),
        "model": answer.model,
        "response_id": answer.response_id,
        "usage": answer.usage,
        "attempt": claim.attempts,
    }
    with conn.transaction():
        done = feedback.complete(conn, claim, analysis)
        if done:
            feedback.settle_event(conn, event, "completed", claim.id)
    crashpoint("livekit.worker.after_complete")
    if not done:
        # The lease ran out and the reaper gave the row to a new claim: this late answer is dropped.
        counters.incr(PROVIDER, Metric.STALE_REJECTED)
        logger.warning("stale completion rejected", extra={"feedback_id": claim.id, "attempt": claim.attempts})
        return "stale_completion_rejected"
    counters.incr(PROVIDER, Metric.EFFECTS)
    # One model call per claim: the calls this room's analysis took (a worker killed before its
    # call still counts one; the HTTP client's retries of one call's 429/5xx do not).
    counters.incr(PROVIDER, Metric.LLM_CALLS_PER_ROOM, claim.attempts)
    logger.info(
        "feedback analysed",
        extra={"feedback_id": claim.id, "attempt": claim.attempts, "usage": _tokens(answer.usage)},
    )
    return "completed"


def _tokens(usage: dict[str, Any]) -> tuple[int, int]:
    """(tokens in, tokens out) of an OpenAI-compatible ``usage``; 0 where the server did not say."""

    def count(*names: str) -> int:
        for name in names:
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return 0

    return count("prompt_tokens", "input_tokens"), count("completion_tokens", "output_tokens")


def _count_llm_call(usage: dict[str, Any]) -> None:
    tokens_in, tokens_out = _tokens(usage)
    counters.incr(PROVIDER, Metric.LLM_CALLS)
    counters.incr(PROVIDER, Metric.LLM_TOKENS_IN, tokens_in)
    counters.incr(PROVIDER, Metric.LLM_TOKENS_OUT, tokens_out)


def _give_back(
    conn: psycopg.Connection[Any], event: InboundEvent, claim: AnalysisClaim, exc: Exception, settings: FeedbackSettings
) -> str:
    error = f"{type(exc).__name__}: {exc}"
    with conn.transaction():
        released = feedback.release(conn, claim, error, settings)
        if released is None:
            status = "stale"
        else:
            status, attempts = released
            if status == "failed":
                store.quarantine(
                    conn,
                    provider=PROVIDER,
                    event_key=f"livekit:feedback:{claim.id}",
                    external_id=claim.room_sid,
                    reason=f"feedback analysis failed {attempts} times; last error: {error}"[:2000],
                    raw=json.dumps(event.payload, ensure_ascii=False),
                )
                feedback.settle_event(conn, event, "failed", claim.id)
    if status == "stale":
        counters.incr(PROVIDER, Metric.STALE_REJECTED)
        logger.warning("stale failure ignored", extra={"feedback_id": claim.id, "error": error})
        return "stale_failure_ignored"
    if status == "failed":
        counters.incr(PROVIDER, Metric.QUARANTINED)
        logger.error("feedback analysis failed for good", extra={"feedback_id": claim.id, "error": error})
        return "failed"
    counters.incr(PROVIDER, Metric.RETRIED)
    logger.warning("feedback analysis failed, will retry", extra={"feedback_id": claim.id, "error": error})
    raise AnalysisRetryError(f"feedback {claim.id} attempt {claim.attempts}: {error}") from exc


def _messages(claim: AnalysisClaim) -> list[dict[str, str]]:
    transcript = (claim.transcript or "(no transcript recorded)")[:MAX_TRANSCRIPT_CHARS]
    user = (
        f"room_sid: {claim.room_sid or ''}\nroom_name: {claim.room_name}\nfeedback_id: {claim.id}\n\n"
        f"Transcript:\n{transcript}"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
