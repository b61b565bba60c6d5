"""The console's actions, each once per ``Idempotency-Key``: a double click, a retried POST or a second
tab replaying the same request gets the first answer, never a second action.

The key is claimed (one INSERT .. ON CONFLICT DO NOTHING, committed) before the action runs and answered
after it; a failed action frees the key, so a retry runs again and meets the same refusal or succeeds.
The actions themselves are the CLI's: ``ops.quarantine.resolve``/``replay``, ``sends.queue.resolve_review``
and the mailbox ``trigger``; their own guards (row locks, ``WHERE status = 'review'``, one pending job per
user) make two tabs with two keys one action and one refusal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from exactly_once.core.errors import BadRequestError, DependencyUnavailableError, ExactlyOnceError
from exactly_once.core.queries import q


class ActionInProgressError(ExactlyOnceError):
    """The same Idempotency-Key is being acted on right now (a double click): ask again in a moment."""


class IdempotencyKeyReusedError(ExactlyOnceError):
    """The Idempotency-Key was used before for a different action, target or body."""


class UnknownMailboxError(ExactlyOnceError):
    """No Graph mailbox of this name is configured."""


class SendNotInReviewError(ExactlyOnceError):
    """The send is not in review (already settled, maybe from another tab): nothing was changed."""


def request_hash(action: str, target: str, body: dict[str, Any]) -> str:
    canonical = json.dumps([action, target, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def once(
    conn: psycopg.Connection[Any],
    key: str,
    *,
    action: str,
    target: str,
    body: dict[str, Any],
    by: str,
    run: Callable[[], dict[str, Any]],
) -> tuple[dict[str, Any], bool]:
    """Run ``run`` once for ``key``: (its answer, True) the first time; (the stored answer, False) after."""
    digest = request_hash(action, target, body)
    claimed = conn.execute(
        q("console_action_claim"), {"key": key, "action": action, "target": target, "request_hash": digest, "by": by}
    ).fetchone()
    if claimed is None:
        seen = conn.execute(q("console_action_get"), {"key": key}).fetchone()
        if seen is None:  # answered-then-released between the two statements: the key is free again
            return once(conn, key, action=action, target=target, body=body, by=by, run=run)
        if seen[2] != digest:
            raise IdempotencyKeyReusedError(f"Idempotency-Key {key!r} was used for another request ({seen[0]})")
        if seen[3] is None:
            raise ActionInProgressError(f"the action of Idempotency-Key {key!r} is still running")
        return dict(seen[3]), False
    try:
        answer = run()
    except BaseException:
        conn.execute(q("console_action_release"), {"key": key})
        raise
    answer = {**answer, "idempotency_key": key, "answered_at": datetime.now(UTC).isoformat()}
    conn.execute(q("console_action_answer"), {"key": key, "answer": Jsonb(answer, dumps=_dumps)})
    return answer, True


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


# -- the actions: the CLI's functions, with the same arguments -----------------------------------------


def resolve_quarantine(conn: psycopg.Connection[Any], quarantine_id: int, *, by: str, note: str) -> dict[str, Any]:
    from exactly_once.ops import quarantine

    row = quarantine.resolve(conn, quarantine_id, by=by, note=note)
    return {"resolved": quarantine_id, "status": row["status"], "handled_by": row["handled_by"]}


def replay_quarantine(
    conn: psycopg.Connection[Any],
    sqs: Any,
    queue_url: str,
    quarantine_id: int,
    *,
    by: str,
    note: str | None,
    force: bool,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from exactly_once.ops import quarantine

    done = quarantine.replay(conn, sqs, queue_url, quarantine_id, by=by, note=note, payload=payload, force=force)
    # The same fields `exactly-once quarantine replay` prints.
    return {
        "replayed": done.quarantine_id,
        "replay_id": done.replay_id,
        "key": done.event_key,
        "previous_outcome": done.previous_outcome,
        "queue_message_id": done.queue_message_id,
    }


def resolve_send(
    conn: psycopg.Connection[Any],
    send_id: int,
    decision: str,
    *,
    by: str,
    note: str,
    provider_message_id: str | None,
) -> dict[str, Any]:
    from exactly_once.sends import queue as send_queue

    with conn.transaction():
        status = send_queue.resolve_review(
            conn, send_id, decision, note=note, by=by, provider_message_id=provider_message_id
        )
    if status is None:
        raise SendNotInReviewError(f"send {send_id} is not in review")
    return {"send_id": send_id, "decision": decision, "status": status}


def trigger_job(conn: psycopg.Connection[Any], sqs: Any, queue_url: str, user_id: str) -> dict[str, Any]:
    from exactly_once.flows.mailbox.scheduling import trigger

    job = trigger(conn, sqs, queue_url, user_id, datetime.now(UTC))
    return {"job_id": job.job_id, "user_id": user_id, "slot": job.slot.isoformat()}


def graph_resync(conn: psycopg.Connection[Any], mailbox: str) -> dict[str, Any]:
    """Ask for a delta resync of a mailbox (the manager's next run takes it), as a lifecycle event would."""
    from exactly_once.flows.graph.mailboxes import want_resync

    if not want_resync(conn, mailbox, datetime.now(UTC)):
        raise UnknownMailboxError(f"no Graph mailbox {mailbox}")
    return {"mailbox": mailbox, "resync_wanted": True}


def replay_dead_letters(
    conn: psycopg.Connection[Any], sqs: Any, dlq_url: str, queue_url: str, *, by: str, note: str | None, limit: int
) -> dict[str, Any]:
    """`exactly-once dlq replay`: each failed event back on the events queue, recorded in replay_log."""
    from botocore.exceptions import BotoCoreError, ClientError

    from exactly_once.ops import quarantine

    try:
        done = quarantine.replay_dead_letters(conn, sqs, dlq_url, queue_url, by=by, note=note, limit=limit)
    except (BotoCoreError, ClientError) as exc:
        raise DependencyUnavailableError("the events dead-letter queue did not answer", exc) from exc
    return {
        "count": len(done),
        "replayed": [
            {
                "replay_id": r.replay_id,
                "key": r.event_key,
                "previous_outcome": r.previous_outcome,
                "queue_message_id": r.queue_message_id,
            }
            for r in done
        ],
    }


def corrected_payload(value: Any, longest: int) -> dict[str, Any] | None:
    """The operator's corrected payload (`quarantine replay --payload`): a JSON object, or its text from the page."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        if len(value) > longest:
            raise BadRequestError(f"payload is longer than {longest} characters", code="invalid_payload")
        try:
            value = json.loads(value, parse_constant=_no_constant)
        except ValueError as exc:
            where = f": {exc.msg} at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise BadRequestError(f"payload is not JSON{where}", code="invalid_payload") from exc
    if not isinstance(value, dict):
        raise BadRequestError("payload must be a JSON object", code="invalid_payload")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
