"""POST /sends (ApiToken authorizer): queue a send once per idempotency key, relay it after commit.

``Idempotency-Key`` header, or derived from ``campaign_id``, ``prospect_id`` and ``step``.
201 created; 200 the existing send (same key, same payload); 409 same key, other payload;
400 invalid body; 503 the database is unavailable (nothing was queued, or the outcome is not
known: the same request again is safe, the key finds the row if it was). Every answer is JSON.
"""

from __future__ import annotations

from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from exactly_once.core import db
from exactly_once.core.errors import BadRequestError, HttpError, ServiceUnavailableError
from exactly_once.core.telemetry import Metric, counters, logger
from exactly_once.ingest.apigw import Request, error_response, json_response
from exactly_once.sends import queue as send_queue
from exactly_once.sends.queue import IdempotencyConflictError, InvalidSendError, SendRequest

PROVIDER = "send_queue"


def parse(request: Request) -> SendRequest:
    body = request.json()
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    key = request.header("idempotency-key")
    if not key:
        parts = [body.get(k) for k in ("campaign_id", "prospect_id", "step")]
        if any(p in (None, "") for p in parts):
            raise BadRequestError(
                "send an Idempotency-Key header, or campaign_id, prospect_id and step", code="missing_idempotency_key"
            )
        key = send_queue.derive_key(str(parts[0]), str(parts[1]), str(parts[2]))
    payload = body.get("payload")
    if payload is None and isinstance(body.get("text"), str):
        payload = {"text": body["text"]}
    fields = {k: body.get(k) for k in ("channel", "sender_account", "recipient")}
    if not all(isinstance(v, str) and v for v in fields.values()):
        raise BadRequestError("channel, sender_account and recipient are required strings")
    if not isinstance(payload, dict):
        raise BadRequestError("payload must be an object (or give text)")
    policy = body.get("policy")
    if policy is not None and not isinstance(policy, str):
        raise BadRequestError("policy must be a string")
    return SendRequest(
        idempotency_key=key,
        channel=str(fields["channel"]),
        sender_account=str(fields["sender_account"]),
        recipient=str(fields["recipient"]),
        payload=payload,
        policy=policy,
    )


def enqueue(request: Request) -> dict[str, Any]:
    send = parse(request)
    try:
        conn = db.connection()
        # One statement in one transaction: a connection lost in the middle rolls it back whole.
        with conn.transaction():
            queued = send_queue.enqueue(conn, send)
    except InvalidSendError as exc:
        raise BadRequestError(str(exc), code="invalid_send") from exc
    except IdempotencyConflictError as exc:
        counters.incr(PROVIDER, Metric.REJECTED)
        return json_response(409, {"error": "idempotency_conflict", "message": str(exc), "id": exc.existing_id})
    except psycopg.OperationalError as exc:
        # Lost connection, server shutting down, statement cancelled: the caller may retry the
        # same request (its key). The broken connection is dropped; the next request opens one.
        db.reset()
        counters.incr(PROVIDER, Metric.REJECTED)
        logger.warning("send not queued: database unavailable", extra={"error": type(exc).__name__})
        raise ServiceUnavailableError("database unavailable", code="database_unavailable") from exc
    if queued.created:
        try:
            send_queue.relay([queued.id])  # after commit
        except (BotoCoreError, ClientError, psycopg.Error):
            # Committed: answer 201 anyway; the outbox sweeper relays the record within a minute.
            logger.exception("relay failed; the outbox sweeper will relay", extra={"send_id": queued.id})
        counters.incr(PROVIDER, Metric.ACCEPTED)
    else:
        counters.incr(PROVIDER, Metric.DUP_DATABASE)
    body = {
        "id": queued.id,
        "status": queued.status,
        "created": queued.created,
        "idempotency_key": send.idempotency_key,
    }
    return json_response(201 if queued.created else 200, body)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        return enqueue(Request.from_apigw_v2(event))
    except HttpError as exc:
        return error_response(exc)
    finally:
        counters.flush()
